//! Logging for operators. With `--log` every lifecycle event is one line in that file, as text or
//! as the JSON lines containerd's runc shim parses (`level`, `msg`, `time`). Without `--log`
//! rune is as quiet as runc unless `--debug` is given. A failing command always ends with exactly
//! one error line on stderr, and in the log file when there is one.

use std::fmt;
use std::fs::OpenOptions;
use std::sync::Mutex;

use anyhow::Context;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::cli::{GlobalOpts, LogFormat};

/// Where the final error of a command goes.
pub struct Log {
    to_file: bool,
}

impl Log {
    pub fn report_error(&self, err: &anyhow::Error) {
        let line = one_line(err);
        if self.to_file {
            tracing::error!("{line}");
        }
        eprintln!("rune: {line}");
    }
}

/// An error and its causes on one line, outermost first.
pub fn one_line(err: &anyhow::Error) -> String {
    format!("{err:#}").replace('\n', " ")
}

pub fn init(opts: &GlobalOpts) -> anyhow::Result<Log> {
    let level = if opts.debug {
        Level::DEBUG
    } else {
        Level::INFO
    };

    let Some(path) = &opts.log else {
        if opts.debug {
            install(opts.log_format, level, Mutex::new(std::io::stderr()));
        }
        return Ok(Log { to_file: false });
    };

    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open log file {}", path.display()))?;
    install(opts.log_format, level, Mutex::new(file));
    Ok(Log { to_file: true })
}

fn install<W>(format: LogFormat, level: Level, writer: Mutex<W>)
where
    W: std::io::Write + Send + 'static,
{
    // Lifecycle lines come from rune's crates; the libraries' own chatter (cgroup controllers
    // this host lacks, which cgroup version is used) is detail, shown with --debug.
    let libraries = if level == Level::DEBUG {
        Level::DEBUG
    } else {
        Level::ERROR
    };
    let filter = Targets::new()
        .with_target("rune", level)
        .with_target("libenclave", level)
        .with_target("pal", level)
        .with_default(libraries);
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_target(false)
        .with_writer(writer);
    // A second init can only happen in tests; the first subscriber stays.
    let _ = match format {
        LogFormat::Text => tracing_subscriber::registry()
            .with(layer.with_filter(filter))
            .try_init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(layer.event_format(JsonLine).with_filter(filter))
            .try_init(),
    };
}

/// One JSON object per event, keyed like logrus so containerd and docker can read it.
struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);

        let level = match *event.metadata().level() {
            Level::ERROR => "error",
            Level::WARN => "warning",
            Level::INFO => "info",
            Level::DEBUG => "debug",
            Level::TRACE => "trace",
        };
        let mut line = Map::new();
        line.insert("level".into(), level.into());
        line.insert("msg".into(), fields.message.into());
        for (key, value) in fields.extra {
            line.insert(key, value);
        }
        line.insert(
            "time".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                .into(),
        );
        writeln!(writer, "{}", Value::Object(line))
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    extra: Vec<(String, Value)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.extra.push((field.name().to_string(), value.into()));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.extra.push((field.name().to_string(), value.into()));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.extra.push((field.name().to_string(), value.into()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.extra.push((field.name().to_string(), value.into()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.extra.push((field.name().to_string(), text.into()));
        }
    }
}
