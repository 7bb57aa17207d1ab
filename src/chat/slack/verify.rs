//! Authenticity of HTTP requests from Slack: `X-Slack-Signature` is
//! `v0=hex(HMAC-SHA256(signing_secret, "v0:{timestamp}:{raw body}"))`, checked on the raw bytes
//! before anything is parsed, in constant time, and only inside a 5-minute window so a captured
//! request cannot be replayed later.
//!
//! slack-morphism has a verifier too, but it takes the body as `&str` and reads the wall clock;
//! this one takes bytes and `now`, so tests control time.

use crate::config::Secret;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// How far a request's timestamp may be from our clock, either way.
pub const WINDOW_SECS: i64 = 5 * 60;

/// Why a request was rejected (logged; the caller only ever sees 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// A header is absent or not text.
    #[error("missing or unreadable {0} header")]
    MissingHeader(&'static str),
    /// The timestamp is not a number, or outside the window.
    #[error("timestamp {0} is outside the {WINDOW_SECS}s window")]
    Stale(String),
    /// The signature does not match the body.
    #[error("signature does not match")]
    BadSignature,
}

/// Checks one request. `timestamp` and `signature` are the raw header values.
pub fn verify(
    secret: &Secret,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), Rejected> {
    let timestamp = timestamp.ok_or(Rejected::MissingHeader("X-Slack-Request-Timestamp"))?;
    let signature = signature.ok_or(Rejected::MissingHeader("X-Slack-Signature"))?;
    let sent: i64 = timestamp.trim().parse().map_err(|_| Rejected::Stale(timestamp.to_owned()))?;
    if (now.timestamp() - sent).abs() > WINDOW_SECS {
        return Err(Rejected::Stale(timestamp.to_owned()));
    }
    let given = signature.strip_prefix("v0=").and_then(|hex_digits| hex::decode(hex_digits).ok());
    let given = given.ok_or(Rejected::BadSignature)?;
    // `verify_slice` compares in constant time.
    mac(secret, timestamp, body).verify_slice(&given).map_err(|_| Rejected::BadSignature)
}

/// The signature Slack would send for `body` at `timestamp` (tests, the benchmark, and any
/// tool that replays a request on purpose).
pub fn sign(secret: &Secret, timestamp: &str, body: &[u8]) -> String {
    format!("v0={}", hex::encode(mac(secret, timestamp, body).finalize().into_bytes()))
}

fn mac(secret: &Secret, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes keys of any length");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// Slack's documented example, from `tests/fixtures/contracts/slack/signing-test-vector.json`.
    fn vector() -> serde_json::Value {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/contracts/slack/signing-test-vector.json");
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).unwrap()
    }

    #[test]
    fn slacks_signing_test_vector_passes() {
        let v = vector();
        let secret = Secret::new(v["signing_secret"].as_str().unwrap());
        let ts = v["headers"]["X-Slack-Request-Timestamp"].as_str().unwrap();
        let signature = v["headers"]["X-Slack-Signature"].as_str().unwrap();
        let body = v["raw_body"].as_str().unwrap().as_bytes();
        assert_eq!(sign(&secret, ts, body), v["expected_signature"].as_str().unwrap());
        let now = at(ts.parse::<i64>().unwrap() + 10);
        assert_eq!(verify(&secret, Some(ts), Some(signature), body, now), Ok(()));
        // The raw form body on disk is the same signed bytes.
        let form = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/contracts/slack/slash-command.form"))
            .unwrap();
        assert_eq!(verify(&secret, Some(ts), Some(signature), &form, now), Ok(()));
    }

    #[test]
    fn any_change_or_a_stale_timestamp_is_rejected() {
        let v = vector();
        let secret = Secret::new(v["signing_secret"].as_str().unwrap());
        let ts = v["headers"]["X-Slack-Request-Timestamp"].as_str().unwrap();
        let signature = v["headers"]["X-Slack-Signature"].as_str().unwrap();
        let body = v["raw_body"].as_str().unwrap().as_bytes();
        let sent: i64 = ts.parse().unwrap();
        let now = at(sent);
        let mut changed = body.to_vec();
        changed[10] ^= 1;
        assert_eq!(verify(&secret, Some(ts), Some(signature), &changed, now), Err(Rejected::BadSignature));
        assert_eq!(verify(&Secret::new("other"), Some(ts), Some(signature), body, now), Err(Rejected::BadSignature));
        assert_eq!(verify(&secret, Some(ts), Some("v0=zz"), body, now), Err(Rejected::BadSignature));
        assert_eq!(verify(&secret, Some(ts), Some(&signature[3..]), body, now), Err(Rejected::BadSignature));
        assert!(matches!(verify(&secret, None, Some(signature), body, now), Err(Rejected::MissingHeader(_))));
        assert!(matches!(verify(&secret, Some(ts), None, body, now), Err(Rejected::MissingHeader(_))));
        assert_eq!(verify(&secret, Some(ts), Some(signature), body, at(sent + WINDOW_SECS)), Ok(()));
        assert!(matches!(
            verify(&secret, Some(ts), Some(signature), body, at(sent + WINDOW_SECS + 1)),
            Err(Rejected::Stale(_))
        ));
        assert!(matches!(
            verify(&secret, Some(ts), Some(signature), body, at(sent - WINDOW_SECS - 1)),
            Err(Rejected::Stale(_))
        ));
        assert!(matches!(verify(&secret, Some("soon"), Some(signature), body, now), Err(Rejected::Stale(_))));
    }
}
