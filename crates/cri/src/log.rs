//! Container logs in the CRI format that the runtime writes to `log_path`: one line per
//! chunk, `<RFC 3339 time> <stream> <tag> <message>`, where the tag is `F` for the end of a
//! line and `P` for a part of a longer one (the runtime splits lines over its buffer size).

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// Which output of the container a message came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line of the log file as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub time: String,
    pub stream: Stream,
    /// `P`: the message continues in the next entry of the same stream.
    pub partial: bool,
    pub msg: String,
}

/// One line the container printed, its partial entries joined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// Time of its first entry.
    pub time: String,
    pub stream: Stream,
    pub msg: String,
}

/// Parses one line of a CRI log file (without its newline). None when it is not one.
pub fn parse_entry(line: &str) -> Option<Entry> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?;
    let stream = match parts.next()? {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        "P" => true,
        "F" => false,
        _ => return None,
    };
    if time.is_empty() {
        return None;
    }
    Some(Entry {
        time: time.to_string(),
        stream,
        partial,
        // An empty line is written as "<time> <stream> F " or without the last space.
        msg: parts.next().unwrap_or("").to_string(),
    })
}

/// Joins partial entries into lines, one pending line per stream.
#[derive(Default, Debug)]
struct Joiner {
    pending: [Option<Line>; 2],
}

impl Joiner {
    fn push(&mut self, e: Entry) -> Option<Line> {
        let slot = &mut self.pending[e.stream as usize];
        let line = match slot.take() {
            Some(mut l) => {
                l.msg.push_str(&e.msg);
                l
            }
            None => Line {
                time: e.time,
                stream: e.stream,
                msg: e.msg,
            },
        };
        if e.partial {
            *slot = Some(line);
            None
        } else {
            Some(line)
        }
    }

    /// What is left when the log ends in the middle of a line.
    fn flush(&mut self) -> Vec<Line> {
        self.pending.iter_mut().filter_map(Option::take).collect()
    }
}

/// Parses a whole CRI log, joining partial entries; lines that are not CRI entries are
/// skipped.
pub fn parse_log(text: &str) -> Vec<Line> {
    let mut joiner = Joiner::default();
    let mut out: Vec<Line> = text
        .lines()
        .filter_map(parse_entry)
        .filter_map(|e| joiner.push(e))
        .collect();
    out.extend(joiner.flush());
    out
}

/// Reads a log file as the container writes it, returning the lines completed since the
/// last call (as `kubectl logs -f` does, from the node's side).
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    offset: u64,
    /// Bytes after the last newline read so far.
    rest: Vec<u8>,
    joiner: Joiner,
}

impl Follower {
    pub fn new(path: impl Into<PathBuf>) -> Follower {
        Follower {
            path: path.into(),
            offset: 0,
            rest: Vec::new(),
            joiner: Joiner::default(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// New complete lines; nothing (not an error) while the file does not exist yet.
    pub async fn poll(&mut self) -> io::Result<Vec<Line>> {
        let mut f = match tokio::fs::File::open(&self.path).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        f.seek(io::SeekFrom::Start(self.offset)).await?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).await?;
        self.offset += buf.len() as u64;
        self.rest.extend_from_slice(&buf);
        let Some(end) = self.rest.iter().rposition(|&b| b == b'\n') else {
            return Ok(Vec::new());
        };
        let complete: Vec<u8> = self.rest.drain(..=end).collect();
        let text = String::from_utf8_lossy(&complete);
        Ok(text
            .lines()
            .filter_map(parse_entry)
            .filter_map(|e| self.joiner.push(e))
            .collect())
    }

    /// The lines still pending once the container is gone: a last unterminated entry and
    /// partial lines that never got their end.
    pub async fn finish(&mut self) -> io::Result<Vec<Line>> {
        let mut lines = self.poll().await?;
        if !self.rest.is_empty() {
            let text = String::from_utf8_lossy(&self.rest).into_owned();
            self.rest.clear();
            if let Some(e) = parse_entry(text.trim_end_matches('\n')) {
                lines.extend(self.joiner.push(e));
            }
        }
        lines.extend(self.joiner.flush());
        Ok(lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries() {
        let e = parse_entry("2024-01-02T03:04:05.123456789Z stdout F hello world").unwrap();
        assert_eq!(e.stream, Stream::Stdout);
        assert!(!e.partial);
        assert_eq!(e.msg, "hello world");
        let e = parse_entry("2024-01-02T03:04:05Z stderr P  two  spaces ").unwrap();
        assert_eq!(e.stream, Stream::Stderr);
        assert!(e.partial);
        assert_eq!(e.msg, " two  spaces ");
        assert_eq!(parse_entry("t stdout F").unwrap().msg, "");
        assert_eq!(parse_entry("t stdout F ").unwrap().msg, "");
        assert!(parse_entry("t stdin F x").is_none());
        assert!(parse_entry("t stdout X x").is_none());
        assert!(parse_entry("garbage").is_none());
        assert!(parse_entry("").is_none());
    }

    #[test]
    fn partial_lines_join_per_stream() {
        let log = "t1 stdout P abc\n\
                   t2 stderr F err\n\
                   t3 stdout P def\n\
                   t4 stdout F ghi\n\
                   t5 stdout F \n\
                   t6 stderr P tail";
        let lines = parse_log(log);
        let got: Vec<(Stream, &str, &str)> = lines
            .iter()
            .map(|l| (l.stream, l.time.as_str(), l.msg.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Stream::Stderr, "t2", "err"),
                (Stream::Stdout, "t1", "abcdefghi"),
                (Stream::Stdout, "t5", ""),
                (Stream::Stderr, "t6", "tail"),
            ]
        );
    }

    #[tokio::test]
    async fn follower_reads_what_is_appended() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("rune-cri-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("0.log");
        let _ = std::fs::remove_file(&path);
        let mut f = Follower::new(&path);
        assert!(f.poll().await.unwrap().is_empty(), "no file yet");
        let mut w = std::fs::File::create(&path).unwrap();
        write!(w, "t1 stdout F one\nt2 stdout F tw").unwrap();
        let got = f.poll().await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].msg, "one");
        write!(w, "o\nt3 stdout F three\n").unwrap();
        let got: Vec<String> = f.poll().await.unwrap().into_iter().map(|l| l.msg).collect();
        assert_eq!(got, vec!["two", "three"]);
        write!(w, "t4 stderr F last").unwrap();
        let got = f.finish().await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].stream, got[0].msg.as_str()),
            (Stream::Stderr, "last")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
