//! The Azure Functions custom handler protocol: invocation envelopes in, replies with
//! `Outputs`, `Logs` and `ReturnValue` out. Parsing is tolerant of the documented
//! variations (Query as object or string, Body absent, header values as string or array).

use std::collections::BTreeMap;

use serde::de::{Deserializer, IgnoredAny};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::webhook::Headers;

/// Output binding names, as declared in `function_app/*/function.json`.
pub mod bindings {
    /// `github-webhook`: the HTTP response.
    pub const HTTP_RESPONSE: &str = "res";
    /// `github-webhook`, `provision-runner`, `cleanup-runner` and `reconcile`: queue output
    /// to `runner-requests`.
    pub const RUNNER_REQUEST: &str = "runnerRequest";
    /// `github-webhook`: queue output to `runner-cleanup`.
    pub const RUNNER_CLEANUP: &str = "runnerCleanup";
    /// `provision-runner`: queue output to `runner-requests-failed`.
    pub const FAILED: &str = "failedRequest";
    /// `cleanup-runner`: queue output to `runner-cleanup-failed`.
    pub const FAILED_CLEANUP: &str = "failedCleanup";
    /// `provision-runner` / `cleanup-runner`: the queue trigger.
    pub const QUEUE_TRIGGER: &str = "message";
}

/// The HTTP request inside a `github-webhook` envelope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostHttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Headers,
    /// The raw body, as the UTF-8 string the host passed.
    pub body: Vec<u8>,
}

/// Why an envelope could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("invocation body is not JSON: {0}")]
    NotJson(String),
    #[error("invocation has no Data.{0}")]
    Missing(&'static str),
}

/// Parses the `github-webhook` invocation: `{"Data":{"req":{...}},"Metadata":{...}}`.
///
/// Only `Data.req`'s `Method`, `Url`, `Headers` and `Body` are kept. The trigger binding is
/// named `req` in our function.json; without it, the first binding (by name) that has a
/// `Method` or `Url` is taken. Any field of an unexpected type reads as absent (a
/// non-string Method or Url as empty; a header value that is neither a string nor an array
/// of strings as no header), so an odd envelope still reaches the signature check.
///
/// # Errors
/// Not JSON, or no request object in `Data`.
pub fn parse_http_invocation(body: &[u8]) -> Result<HostHttpRequest, EnvelopeError> {
    let envelope: Lenient<Invocation> =
        serde_json::from_slice(body).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
    let mut bindings = envelope.0.and_then(|e| e.data.0).ok_or(EnvelopeError::Missing("req"))?;
    let req = match bindings.remove("req") {
        Some(req) => req.0,
        None => bindings.into_values().filter_map(|b| b.0).find(|r| r.method.is_some() || r.url.is_some()),
    }
    .ok_or(EnvelopeError::Missing("req"))?;
    let headers =
        req.headers.0.unwrap_or_default().into_iter().filter_map(|(name, value)| Some((name, value.joined()?)));
    Ok(HostHttpRequest {
        method: req.method.and_then(|m| m.0).unwrap_or_default(),
        url: req.url.and_then(|u| u.0).unwrap_or_default(),
        headers: Headers::new(headers.collect()),
        body: match req.body {
            None => Vec::new(),
            Some(Value::String(text)) => text.into_bytes(),
            // Not what the host documents; keep going, the signature check will decide.
            Some(other) => other.to_string().into_bytes(),
        },
    })
}

/// The invocation; `Metadata` and anything else beside `Data` is skipped.
#[derive(Deserialize)]
struct Invocation {
    /// The bindings by name.
    #[serde(rename = "Data", default)]
    data: Lenient<BTreeMap<String, Lenient<HttpTrigger>>>,
}

/// An HTTP trigger binding; `Query`, `Params`, `Identities` and the rest are skipped.
#[derive(Deserialize)]
struct HttpTrigger {
    /// `Some` whenever the key is there (null included): it marks a request binding.
    #[serde(rename = "Method", default, deserialize_with = "present")]
    method: Option<Lenient<String>>,
    #[serde(rename = "Url", default, deserialize_with = "present")]
    url: Option<Lenient<String>>,
    #[serde(rename = "Headers", default)]
    headers: Lenient<BTreeMap<String, HeaderValue>>,
    /// Null reads as absent (an empty body).
    #[serde(rename = "Body", default)]
    body: Option<Value>,
}

/// A header value as the host sends it: an array of strings (joined with `,`; other
/// items skipped), or a single string. Anything else drops the header.
#[derive(Deserialize)]
#[serde(untagged)]
enum HeaderValue {
    One(String),
    Many(Vec<Lenient<String>>),
    Other(IgnoredAny),
}

impl HeaderValue {
    fn joined(self) -> Option<String> {
        match self {
            Self::One(value) => Some(value),
            Self::Many(items) => Some(items.into_iter().filter_map(|i| i.0).collect::<Vec<_>>().join(",")),
            Self::Other(_) => None,
        }
    }
}

/// A `T` when the JSON value has T's shape (an object for a struct), and absent for any
/// other value, so one odd field does not make the whole invocation unreadable.
struct Lenient<T>(Option<T>);

impl<T> Default for Lenient<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Shape<T> {
            // Tried first: serde also fills a struct from an array (fields in order), and
            // an array is never an invocation, a binding or a request.
            Array(#[allow(dead_code)] Vec<IgnoredAny>),
            Fits(T),
            Other(IgnoredAny),
        }
        Ok(Self(match Shape::deserialize(d)? {
            Shape::Fits(t) => Some(t),
            Shape::Array(_) | Shape::Other(_) => None,
        }))
    }
}

/// For `#[serde(default, deserialize_with = "present")]`: `Some` whenever the key is
/// there, where a plain `Option` field would read null as absent.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A queue-trigger invocation: the message value and how often it was dequeued.
#[derive(Debug, Clone)]
pub struct QueueInvocation {
    pub message: Value,
    pub dequeue_count: u32,
    pub id: Option<String>,
}

/// Parses `{"Data":{"<binding>": <message>},"Metadata":{"DequeueCount":n,...}}`.
///
/// # Errors
/// Not JSON, or no message in `Data`.
pub fn parse_queue_invocation(body: &[u8]) -> Result<QueueInvocation, EnvelopeError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
    let data = v.get("Data").and_then(Value::as_object).ok_or(EnvelopeError::Missing("message"))?;
    let message = data
        .get(bindings::QUEUE_TRIGGER)
        .or_else(|| data.values().next())
        .cloned()
        .ok_or(EnvelopeError::Missing("message"))?;
    let meta = v.get("Metadata");
    let dequeue_count = meta
        .and_then(|m| m.get("DequeueCount"))
        .and_then(|d| d.as_u64().or_else(|| d.as_str().and_then(|s| s.trim_matches('"').parse().ok())))
        .and_then(|d| u32::try_from(d).ok())
        .unwrap_or(1)
        .max(1);
    let id = meta.and_then(|m| m.get("Id")).and_then(Value::as_str).map(str::to_owned);
    Ok(QueueInvocation { message, dequeue_count, id })
}

/// The reply to any invocation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InvocationReply {
    #[serde(rename = "Outputs")]
    pub outputs: Map<String, Value>,
    #[serde(rename = "Logs")]
    pub logs: Vec<String>,
    #[serde(rename = "ReturnValue")]
    pub return_value: Option<Value>,
}

impl InvocationReply {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the HTTP response GitHub will see (status as a string, as the host expects).
    pub fn http_response(&mut self, status: u16, body: &Value) {
        self.outputs.insert(
            bindings::HTTP_RESPONSE.into(),
            json!({
                "statusCode": status.to_string(),
                "body": body.to_string(),
                "headers": { "Content-Type": "application/json" },
            }),
        );
    }

    /// Adds messages to a queue output (an array when more than one).
    pub fn queue(&mut self, binding: &str, messages: Vec<Value>) {
        if messages.is_empty() {
            return;
        }
        let value = if messages.len() == 1 {
            messages.into_iter().next().unwrap_or(Value::Null)
        } else {
            Value::Array(messages)
        };
        self.outputs.insert(binding.into(), value);
    }

    pub fn log(&mut self, line: impl Into<String>) {
        self.logs.push(line.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_docs_queue_example() {
        let body =
            include_bytes!("../tests/fixtures/azure-functions/custom-handler-request.queue-trigger.docs-example.json");
        let q = parse_queue_invocation(body).expect("parses");
        assert_eq!(q.dequeue_count, 1);
        assert_eq!(q.message, Value::String("{ message: \"Message sent\" }".into()));
    }

    #[test]
    fn reads_the_docs_http_example_with_array_headers() {
        let body =
            include_bytes!("../tests/fixtures/azure-functions/custom-handler-request.http-trigger.docs-example.json");
        let r = parse_http_invocation(body).expect("parses");
        assert_eq!(r.method, "POST");
        assert!(!r.body.is_empty());
    }

    #[test]
    fn tolerates_string_query_string_headers_and_absent_body() {
        let body = br#"{"Data":{"req":{"Url":"http://x/api/github-webhook","Method":"POST","Query":"{}",
            "Headers":{"X-GitHub-Event":"ping","content-type":["application/json"]}}},"Metadata":{}}"#;
        let r = parse_http_invocation(body).expect("parses");
        assert_eq!(r.headers.get("x-github-event"), Some("ping"));
        assert_eq!(r.headers.get("Content-Type"), Some("application/json"));
        assert!(r.body.is_empty());
    }

    /// The Value-based reading this parser replaced, kept as the oracle for the typed one.
    fn reference_parse(body: &[u8]) -> Result<HostHttpRequest, EnvelopeError> {
        let v: Value = serde_json::from_slice(body).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
        let data = v.get("Data").and_then(Value::as_object).ok_or(EnvelopeError::Missing("req"))?;
        let req = data
            .get("req")
            .or_else(|| data.values().find(|r| r.get("Method").is_some() || r.get("Url").is_some()))
            .and_then(Value::as_object)
            .ok_or(EnvelopeError::Missing("req"))?;
        let get_str = |k: &str| req.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        let headers = match req.get("Headers") {
            Some(Value::Object(h)) => h
                .iter()
                .filter_map(|(k, v)| {
                    let value = match v {
                        Value::String(s) => s.clone(),
                        Value::Array(items) => items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","),
                        _ => return None,
                    };
                    Some((k.clone(), value))
                })
                .collect(),
            _ => Vec::new(),
        };
        let body = match req.get("Body") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => s.clone().into_bytes(),
            Some(other) => other.to_string().into_bytes(),
        };
        Ok(HostHttpRequest { method: get_str("Method"), url: get_str("Url"), headers: Headers::new(headers), body })
    }

    fn arb_scalar() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            "[a-zA-Z0-9 \\\"{}:,é\\x00-\\x1f]{0,24}".prop_map(Value::from),
        ]
    }

    fn arb_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        arb_scalar().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[A-Za-z]{1,8}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn arb_request() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let header_value = prop_oneof![
            "[ -~]{0,16}".prop_map(Value::from),
            prop::collection::vec(prop_oneof!["[ -~]{0,8}".prop_map(Value::from), arb_scalar()], 0..3)
                .prop_map(Value::Array),
            arb_value(),
        ];
        // Header names distinct ignoring case, so first-match lookups agree whatever the order.
        let headers = prop::collection::btree_map("[a-z][a-z0-9-]{0,10}", header_value, 0..5);
        (
            prop::option::of(arb_value()),
            prop::option::of(arb_value()),
            prop::option::of(headers.prop_map(|h| Value::Object(h.into_iter().collect()))),
            prop::option::of(prop_oneof!["[ -~]{0,40}".prop_map(Value::from), arb_value()]),
            prop::option::of(arb_value()),
        )
            .prop_map(|(method, url, headers, body, extra)| {
                let mut m = Map::new();
                for (k, v) in [("Method", method), ("Url", url), ("Headers", headers), ("Body", body), ("Query", extra)]
                {
                    if let Some(v) = v {
                        m.insert(k.to_owned(), v);
                    }
                }
                Value::Object(m)
            })
    }

    proptest::proptest! {
        #[test]
        fn typed_parse_reads_what_the_value_parse_read(
            req in proptest::option::of(arb_request()),
            others in proptest::collection::btree_map("[a-z]{1,6}", proptest::prop_oneof![arb_request(), arb_value()], 0..3),
            metadata in arb_value(),
            data_is_object in proptest::prelude::any::<bool>(),
        ) {
            let mut data = Map::new();
            for (k, v) in others {
                data.insert(k, v);
            }
            if let Some(req) = req {
                data.insert("req".to_owned(), req);
            }
            let data = if data_is_object { Value::Object(data) } else { metadata.clone() };
            let envelope = json!({ "Metadata": metadata, "Data": data }).to_string();
            let (new, old) = (parse_http_invocation(envelope.as_bytes()), reference_parse(envelope.as_bytes()));
            match (new, old) {
                (Ok(new), Ok(old)) => {
                    proptest::prop_assert_eq!(&new.method, &old.method);
                    proptest::prop_assert_eq!(&new.url, &old.url);
                    proptest::prop_assert_eq!(&new.body, &old.body);
                    let (mut a, mut b) = (new.headers.pairs().to_vec(), old.headers.pairs().to_vec());
                    a.sort();
                    b.sort();
                    proptest::prop_assert_eq!(a, b);
                }
                (Err(new), Err(old)) => proptest::prop_assert_eq!(new, old),
                (new, old) => proptest::prop_assert!(false, "typed {new:?} but value-based {old:?} for {envelope}"),
            }
        }
    }

    #[test]
    fn body_escapes_decode_as_serde_json_decodes_them() {
        for text in [
            r#""""#,
            r#""quotes \" and \\ backslash \/ slash \b\f\n\r\t""#,
            r#""\u0000\u001f\u00e9\u20ac and a pair \ud83d\ude00 and upper \uD83D\uDE00 end""#,
            "\"raw UTF-8 \u{e9}\u{20ac}\u{1f600} kept\"",
            r#""\\u0041 is not an escape""#,
        ] {
            let envelope = format!(r#"{{"Data":{{"req":{{"Method":"POST","Body":{text}}}}}}}"#);
            let expected: String = serde_json::from_str(text).expect("serde reads it");
            let got = parse_http_invocation(envelope.as_bytes()).expect("parses").body;
            assert_eq!(got, expected.into_bytes(), "{text}");
        }
        for lone in [r#""\ud83d""#, r#""\ud83dx""#, r#""\ud83d\u0041""#, r#""\ude00""#] {
            let envelope = format!(r#"{{"Data":{{"req":{{"Method":"POST","Body":{lone}}}}}}}"#);
            assert!(
                matches!(parse_http_invocation(envelope.as_bytes()), Err(EnvelopeError::NotJson(_))),
                "{lone} refused as serde_json refuses it"
            );
            assert!(matches!(reference_parse(envelope.as_bytes()), Err(EnvelopeError::NotJson(_))));
        }
    }

    #[test]
    fn an_array_is_never_read_as_an_invocation_a_binding_or_a_request() {
        // serde's derive would fill a struct from an array, fields in order.
        for envelope in [
            r#"[{"req":{"Method":"POST"}}]"#,
            r#"{"Data":[{"Method":"POST"}]}"#,
            r#"{"Data":{"req":["POST","http://x",{},"{}"]}}"#,
            r#"{"Data":{"other":["POST","http://x",{},"{}"]}}"#,
        ] {
            assert_eq!(parse_http_invocation(envelope.as_bytes()), Err(EnvelopeError::Missing("req")), "{envelope}");
            assert_eq!(reference_parse(envelope.as_bytes()), Err(EnvelopeError::Missing("req")), "{envelope}");
        }
    }

    #[test]
    fn without_req_the_first_binding_with_a_method_or_url_of_any_value_is_taken() {
        let envelope = br#"{"Data":{"a":{"Body":"not this"},"b":{"Method":null,"Body":"this"},"c":{"Url":"u","Body":"nor this"}}}"#;
        let r = parse_http_invocation(envelope).expect("parses");
        assert_eq!((r.method.as_str(), r.body.as_slice()), ("", &b"this"[..]));
        assert_eq!(reference_parse(envelope), Ok(r));
    }

    #[test]
    fn fields_of_an_unexpected_type_read_as_absent() {
        let envelope = br#"{"Data":{"req":{"Method":["POST"],"Url":7,"Query":1.5,
            "Headers":{"a":["x",1,"y"],"b":null,"c":{"d":"e"},"e":[],"f":"g"},"Body":{"k":[1,2.5,null]}}}}"#;
        let r = parse_http_invocation(envelope).expect("parses");
        assert_eq!((r.method.as_str(), r.url.as_str()), ("", ""));
        let pairs: Vec<(&str, &str)> = r.headers.pairs().iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(pairs, [("a", "x,y"), ("e", ""), ("f", "g")]);
        assert_eq!(r.body, br#"{"k":[1,2.5,null]}"#);
    }

    /// JSON leaves a repeated key undefined, and the host serializes dictionaries, so it
    /// never sends one. serde's derive refuses a repeated field, which reads as no request
    /// (the hand-written visitor this replaced took the last value). Repeated bindings or
    /// header names are map keys: the last one is kept.
    #[test]
    fn a_request_that_repeats_a_field_is_no_request() {
        let repeated = br#"{"Data":{"req":{"Method":"GET","Method":"POST","Body":"x"}}}"#;
        assert_eq!(parse_http_invocation(repeated), Err(EnvelopeError::Missing("req")));
        let repeated_header =
            br#"{"Data":{"req":{"Headers":{"a":"1","a":"2"}},"req":{"Method":"POST","Headers":{"a":"1","a":"2"}}}}"#;
        let r = parse_http_invocation(repeated_header).expect("parses");
        assert_eq!((r.method.as_str(), r.headers.pairs()), ("POST", &[("a".to_owned(), "2".to_owned())][..]));
    }

    /// The whole envelope is read (skipped fields too), so it must be JSON that serde_json
    /// can represent throughout, as for the Value-based reading; the visitor this replaced
    /// skipped the fields it did not keep without parsing their numbers.
    #[test]
    fn a_number_out_of_range_anywhere_is_not_json() {
        let envelope = br#"{"Data":{"req":{"Method":"POST","Body":"{}"}},"Metadata":{"n":1e999}}"#;
        assert!(matches!(parse_http_invocation(envelope), Err(EnvelopeError::NotJson(_))));
        assert!(matches!(reference_parse(envelope), Err(EnvelopeError::NotJson(_))));
    }

    #[test]
    fn reply_uses_the_host_field_names() {
        let mut r = InvocationReply::new();
        r.http_response(202, &json!({"result":"accepted"}));
        r.queue(bindings::RUNNER_REQUEST, vec![json!({"v":1})]);
        let v = serde_json::to_value(&r).expect("ser");
        assert_eq!(v["Outputs"]["res"]["statusCode"], "202");
        assert_eq!(v["Outputs"]["runnerRequest"]["v"], 1);
        assert!(v["ReturnValue"].is_null());
    }
}
