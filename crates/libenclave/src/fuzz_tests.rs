//! Property-based fuzzing of the agent protocol (`protocol.rs`): the init-runelet reads requests
//! from any process that can reach the agent socket, and the runelet reads the answers. Framed
//! messages of arbitrary bytes must give a message, a clean end or an error, never a panic or a
//! hang, and every message must survive the round trip.
//!
//! `PROPTEST_CASES=100000 cargo test -p libenclave --lib fuzz` runs more cases.

use std::io::Write;
use std::os::unix::net::UnixStream;

use proptest::prelude::*;

use crate::protocol::{self, Request, Response};

/// `cases` unless `PROPTEST_CASES` asks for another number.
fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (
            prop::collection::vec(any::<String>(), 0..4),
            prop::collection::vec(any::<String>(), 0..4)
        )
            .prop_map(|(argv, env)| Request::Exec { argv, env }),
        any::<i32>().prop_map(|signal| Request::Signal { signal }),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        any::<i32>().prop_map(|pid| Response::Started { pid }),
        any::<i32>().prop_map(|status| Response::Exited { status }),
        any::<String>().prop_map(|message| Response::Error { message }),
    ]
}

/// A byte stream as a peer could write it: frames whose length may lie, with bodies that are
/// JSON near a real message or arbitrary bytes.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        request().prop_map(|r| serde_json::to_vec(&r).unwrap_or_default()),
        response().prop_map(|r| serde_json::to_vec(&r).unwrap_or_default()),
        prop::sample::select(vec![
            r#"{"exec":{"argv":[],"env":[]}}"#,
            r#"{"exec":{"argv":null}}"#,
            r#"{"signal":{"signal":99999999999}}"#,
            r#"{"signal":{"signal":-1},"exec":{}}"#,
            r#""exec""#,
            r#"{"error":{"message":"\ud800"}}"#,
            "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
    ];
    let frame = (
        body,
        prop_oneof![3 => Just(None), 1 => any::<u32>().prop_map(Some)],
    )
        .prop_map(|(body, lie)| {
            // A lying length beyond the limit is refused before anything is allocated; one
            // below it makes the reader wait for bytes that never come, then see the end.
            let len = lie.map_or(body.len() as u32, |l| l % (8 << 20));
            let mut frame = len.to_le_bytes().to_vec();
            frame.extend(body);
            frame
        });
    prop_oneof![
        4 => prop::collection::vec(frame, 0..4).prop_map(|f| f.concat()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

/// Feeds `bytes` to a reader and drains it; the writer is closed first, so nothing blocks.
fn drain<T: for<'de> serde::Deserialize<'de>>(bytes: &[u8], with_fds: bool) {
    let (mut writer, mut reader) = UnixStream::pair().expect("socketpair");
    writer.write_all(bytes).expect("write");
    drop(writer);
    for _ in 0..16 {
        let received = if with_fds {
            protocol::receive_with_fds::<T>(&mut reader).map(|m| m.map(|(m, _)| m))
        } else {
            protocol::receive::<T>(&mut reader)
        };
        match received {
            Ok(Some(_)) => {}
            Ok(None) => return,
            Err(err) => {
                assert!(!err.to_string().trim().is_empty());
                return;
            }
        }
    }
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn requests_from_arbitrary_streams(bytes in stream(), with_fds in any::<bool>()) {
        drain::<Request>(&bytes, with_fds);
    }

    #[test]
    fn responses_from_arbitrary_streams(bytes in stream()) {
        drain::<Response>(&bytes, false);
    }

    #[test]
    fn messages_round_trip(request in request(), response in response()) {
        let (mut a, mut b) = UnixStream::pair().expect("socketpair");
        protocol::send(&mut a, &request).expect("send");
        protocol::send(&mut a, &response).expect("send");
        drop(a);
        prop_assert_eq!(protocol::receive::<Request>(&mut b).expect("request"), Some(request));
        prop_assert_eq!(protocol::receive::<Response>(&mut b).expect("response"), Some(response));
        prop_assert_eq!(protocol::receive::<Request>(&mut b).expect("end"), None);
    }
}
