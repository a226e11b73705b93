//! The Functions host envelopes and queue message decoding: never panic, and whatever
//! decodes re-encodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runner_dispatch::functions_host::{parse_http_invocation, parse_queue_invocation};
use runner_dispatch::message::decode_message;

fuzz_target!(|data: &[u8]| {
    let _ = parse_http_invocation(data);
    if let Ok(q) = parse_queue_invocation(data) {
        assert!(q.dequeue_count >= 1);
        check_decode(&q.message);
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        check_decode(&v);
    }
    check_decode(&serde_json::Value::String(String::from_utf8_lossy(data).into_owned()));
});

fn check_decode(v: &serde_json::Value) {
    if let Ok(m) = decode_message(v) {
        let again = serde_json::to_value(&m).expect("a message serializes");
        assert_eq!(decode_message(&again).expect("a decoded message decodes again"), m);
    }
}
