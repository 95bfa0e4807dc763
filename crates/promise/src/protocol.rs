//! CFEngine's promise module protocol, JSON variant: cf-agent sends a header line
//! (`cf-agent 3.21.0 v1`) and a blank line, the module answers with its own header
//! (`baton_promise 0.1.0 v1 json_based`) and a blank line; then each request is one line
//! of JSON followed by a blank line, and so is each reply:
//!
//! ```text
//! {"operation": "validate_promise", "promise_type": "baton_signal", "promiser": "did_my_job", "attributes": {...}}
//! {"operation": "validate_promise", "promiser": "did_my_job", "attributes": {...}, "result": "valid"}
//! {"operation": "evaluate_promise", ...}
//! {"operation": "evaluate_promise", ..., "log": [...], "result_classes": [...], "result": "repaired"}
//! {"operation": "terminate"}
//! {"operation": "terminate", "result": "success"}
//! ```

use crate::promises::{evaluate, validate, Outcome};
use serde_json::{json, Map, Value};
use std::io::{self, BufRead, Read, Write};

/// No request is this big; a bigger one is a broken agent or a hostile peer.
const MAX_MESSAGE: usize = 1024 * 1024;

const HEADER: &str = concat!(
    "baton_promise ",
    env!("CARGO_PKG_VERSION"),
    " v1 json_based"
);

/// Read one message: the lines up to a blank line (leading blank lines skipped). `None`
/// at the end of input.
fn read_message(input: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut message = String::new();
    loop {
        let mut line = String::new();
        let limit = (MAX_MESSAGE + 1 - message.len().min(MAX_MESSAGE)) as u64;
        let n = Read::take(&mut *input, limit).read_line(&mut line)?;
        if n == 0 {
            return Ok((!message.is_empty()).then_some(message));
        }
        if message.len() + line.len() > MAX_MESSAGE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "message too long",
            ));
        }
        let text = line.trim_end_matches(['\n', '\r']);
        if text.is_empty() {
            if message.is_empty() {
                continue;
            }
            return Ok(Some(message));
        }
        if !message.is_empty() {
            message.push('\n');
        }
        message.push_str(text);
    }
}

fn log(level: &str, message: &str) -> Value {
    json!({"level": level, "message": message})
}

/// The reply to one request.
pub fn reply(request: &str) -> (Value, bool) {
    let parsed: Result<Map<String, Value>, _> = serde_json::from_str(request);
    let Ok(req) = parsed else {
        return (
            json!({"operation": "unknown", "result": "error",
                   "log": [log("critical", "baton-promise: a request that is not a JSON object")]}),
            false,
        );
    };
    let operation = req
        .get("operation")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let promise_type = req
        .get("promise_type")
        .and_then(Value::as_str)
        .unwrap_or("");
    let promiser = req.get("promiser").and_then(Value::as_str).unwrap_or("");
    let empty = Map::new();
    let attributes = req
        .get("attributes")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut out = json!({"operation": operation});
    for key in ["promiser", "attributes"] {
        if let Some(v) = req.get(key) {
            out[key] = v.clone();
        }
    }
    match operation.as_str() {
        "validate_promise" => match validate(promise_type, promiser, attributes) {
            Ok(()) => out["result"] = "valid".into(),
            Err(why) => {
                out["result"] = "invalid".into();
                out["log"] = json!([log("error", &why)]);
            }
        },
        "evaluate_promise" => {
            let Outcome {
                result,
                classes,
                logs,
            } = evaluate(promise_type, promiser, attributes);
            out["result"] = result.into();
            out["result_classes"] = json!(classes);
            out["log"] = logs
                .iter()
                .map(|(level, message)| log(level, message))
                .collect();
        }
        "terminate" => {
            out["result"] = "success".into();
            return (out, true);
        }
        other => {
            out["result"] = "error".into();
            out["log"] = json!([log(
                "critical",
                &format!("baton-promise: unknown operation '{other}'")
            )]);
        }
    }
    (out, false)
}

/// Speak the protocol on `input` and `output` until `terminate` or the end of input.
pub fn serve(mut input: impl BufRead, mut output: impl Write) -> io::Result<()> {
    let Some(header) = read_message(&mut input)? else {
        return Ok(());
    };
    let words: Vec<&str> = header.split_whitespace().collect();
    if words.len() < 3 || !words[2].starts_with('v') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a promise module header: '{header}' (baton-promise is run by cf-agent)"),
        ));
    }
    write!(output, "{HEADER}\n\n")?;
    output.flush()?;
    while let Some(request) = read_message(&mut input)? {
        let (answer, done) = reply(&request);
        write!(output, "{answer}\n\n")?;
        output.flush()?;
        if done {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(input: &str) -> Vec<Value> {
        let mut out = Vec::new();
        serve(input.as_bytes(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut parts = text.split("\n\n");
        assert!(parts.next().unwrap().starts_with("baton_promise "));
        parts
            .filter(|p| !p.is_empty())
            .map(|p| serde_json::from_str(p).unwrap())
            .collect()
    }

    #[test]
    fn headers_then_requests_then_terminate() {
        let replies = session(
            "cf-agent 3.21.0 v1\n\n\
             {\"operation\": \"validate_promise\", \"log_level\": \"info\", \"promise_type\": \"baton_signal\", \"promiser\": \"did_my_job\", \"attributes\": {\"ttl\": \"10m\"}}\n\n\
             {\"operation\": \"validate_promise\", \"promise_type\": \"baton_signal\", \"promiser\": \"bad name\", \"attributes\": {}}\n\n\
             {\"operation\": \"validate_promise\", \"promise_type\": \"nope\", \"promiser\": \"x\", \"attributes\": {}}\n\n\
             {\"operation\": \"terminate\", \"log_level\": \"info\"}\n\n\
             {\"operation\": \"never read\"}\n\n",
        );
        assert_eq!(replies.len(), 4);
        assert_eq!(replies[0]["result"], "valid");
        assert_eq!(replies[0]["promiser"], "did_my_job");
        assert_eq!(replies[1]["result"], "invalid");
        assert!(replies[1]["log"][0]["message"]
            .as_str()
            .unwrap()
            .contains("bad name"));
        assert_eq!(replies[2]["result"], "invalid");
        assert_eq!(
            replies[3],
            json!({"operation": "terminate", "result": "success"})
        );
    }

    #[test]
    fn garbage_gets_an_error_reply_not_a_crash() {
        let replies = session("cf-agent 3.21.0 v1\n\nnot json\n\n{\"operation\": 3}\n\n");
        assert_eq!(replies[0]["result"], "error");
        assert_eq!(replies[1]["result"], "error");
        let mut out = Vec::new();
        assert!(serve("GET / HTTP/1.1\n\n".as_bytes(), &mut out).is_err());
    }
}

#[cfg(test)]
mod fuzz_protocol {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn fuzz_requests_never_panic(text in ".{0,200}") {
            let _ = reply(&text);
            let mut out = Vec::new();
            let _ = serve(format!("cf-agent 3.21.0 v1\n\n{text}\n\n").as_bytes(), &mut out);
        }
    }
}
