//! Publishing task events to containerd, in order, from one thread. The connection to
//! containerd's TTRPC socket is made again when containerd restarts; an event that cannot be
//! delivered is retried a few times and then dropped (as the runc shim does). When neither an
//! event nor a request came for a second, the shim is idle: this thread closes the connection
//! (the sync TTRPC client polls every 10 ms while connected) and releases the shim's code
//! pages (trim.rs), which a kubelet's periodic status and stats requests fault back in.
//!
//! Events are packed with their type names given here rather than looked up through protobuf
//! reflection, which would build descriptor tables for every event file in each shim.

use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use containerd_shim::event::Event;
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::protos::shim::event::Envelope;
use containerd_shim::protos::shim::events::ForwardRequest;
use containerd_shim::protos::ttrpc;
use containerd_shim::protos::EventsClient;

/// A task event with the protobuf type name containerd decodes it by.
pub trait TaskEvent: Event + Message {
    const TYPE: &'static str;
}

macro_rules! task_events {
    ($($t:ident),*) => {
        $(impl TaskEvent for $t {
            const TYPE: &'static str = concat!("containerd.events.", stringify!($t));
        })*
    };
}

task_events!(
    TaskCreate,
    TaskStart,
    TaskDelete,
    TaskExit,
    TaskOOM,
    TaskExecAdded,
    TaskExecStarted,
    TaskPaused,
    TaskResumed
);

enum Item {
    /// topic, type name, encoded event
    Event(String, &'static str, Vec<u8>),
    /// A request was served: the shim is not idle yet.
    Activity,
}

#[derive(Clone)]
pub struct Events {
    tx: Sender<Item>,
}

/// Quiet time after the last event before the shim's code pages are released.
const IDLE: Duration = Duration::from_secs(1);

impl Events {
    /// Starts the publishing thread for containerd's TTRPC socket `address`.
    pub fn start(address: String, namespace: String) -> Events {
        let (tx, rx) = channel::<Item>();
        let spawned = std::thread::Builder::new()
            .name("events".into())
            .stack_size(256 * 1024)
            .spawn(move || forward(&address, &namespace, rx));
        if let Err(e) = spawned {
            log::error!("cannot start the event publisher: {e}");
        }
        Events { tx }
    }

    /// Queues `event` for containerd.
    pub fn send<E: TaskEvent>(&self, event: E) {
        let topic = event.topic();
        log::debug!("event {topic}");
        match event.write_to_bytes() {
            Ok(data) => {
                if self.tx.send(Item::Event(topic, E::TYPE, data)).is_err() {
                    log::warn!("event publisher is gone");
                }
            }
            Err(e) => log::error!("cannot encode event {topic}: {e}"),
        }
    }

    /// Notes that a request was served, so the idle time counts from now.
    pub fn activity(&self) {
        let _ = self.tx.send(Item::Activity);
    }
}

fn connect(address: &str) -> Result<EventsClient, String> {
    let fd = containerd_shim::util::connect(address).map_err(|e| e.to_string())?;
    let client = ttrpc::Client::new(fd).map_err(|e| e.to_string())?;
    Ok(EventsClient::new(client))
}

fn forward(address: &str, namespace: &str, rx: Receiver<Item>) {
    let mut client: Option<EventsClient> = None;
    // Every lifecycle step ends with an event: once they stop for a while the shim is idle.
    let mut busy = true;
    loop {
        let next = if busy {
            rx.recv_timeout(IDLE)
        } else {
            // Idle: sleep until the next event.
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        };
        let (topic, type_url, data) = match next {
            Ok(Item::Event(topic, type_url, data)) => (topic, type_url, data),
            Ok(Item::Activity) => {
                busy = true;
                continue;
            }
            Err(RecvTimeoutError::Timeout) => {
                if busy {
                    // The TTRPC client's receiver thread wakes every 10 ms while connected:
                    // connect only for bursts of events.
                    client = None;
                    crate::trim::release_code();
                    busy = false;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        busy = true;
        let request = ForwardRequest {
            envelope: MessageField::some(Envelope {
                timestamp: containerd_shim::util::timestamp().ok().into(),
                namespace: namespace.to_string(),
                topic: topic.clone(),
                event: MessageField::some(Any {
                    type_url: type_url.to_string(),
                    value: data,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut delivered = false;
        for attempt in 0..10u32 {
            if client.is_none() {
                match connect(address) {
                    Ok(c) => client = Some(c),
                    Err(e) => {
                        log::debug!("connect to {address}: {e}");
                        std::thread::sleep(Duration::from_millis(100 << attempt.min(5)));
                        continue;
                    }
                }
            }
            let Some(c) = client.as_ref() else { continue };
            match c.forward(ttrpc::context::with_timeout(10_000_000_000), &request) {
                Ok(_) => {
                    delivered = true;
                    break;
                }
                Err(err) => {
                    log::warn!("publish {topic}: {err}");
                    // containerd restarted (or is restarting): connect again.
                    client = None;
                    std::thread::sleep(Duration::from_millis(100 << attempt.min(5)));
                }
            }
        }
        if !delivered {
            log::error!("event {topic} dropped: containerd is unreachable");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::protos::protobuf::MessageFull;

    #[test]
    fn type_names_match_the_protos() {
        assert_eq!(
            <TaskExit as TaskEvent>::TYPE,
            TaskExit::descriptor().full_name()
        );
        assert_eq!(
            <TaskExecStarted as TaskEvent>::TYPE,
            TaskExecStarted::descriptor().full_name()
        );
        assert_eq!(
            <TaskOOM as TaskEvent>::TYPE,
            TaskOOM::descriptor().full_name()
        );
    }
}
