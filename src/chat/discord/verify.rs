//! Authenticity of HTTP interactions: Ed25519 over `X-Signature-Timestamp` + raw body, and a
//! timestamp window, because Discord documents no replay window of its own.

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, VerifyingKey};

/// How far a request's timestamp may be from now, either way.
pub const MAX_SKEW_SECS: i64 = 5 * 60;

/// Why a request was rejected (logged; the sender only sees 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// A signature header is absent or not hex of the right length.
    #[error("missing or malformed signature headers")]
    Malformed,
    /// The signature does not match the body and timestamp.
    #[error("bad signature")]
    BadSignature,
    /// The timestamp is outside the window.
    #[error("timestamp outside the {MAX_SKEW_SECS}s window")]
    Stale,
}

/// Checks the signature (hex, from `X-Signature-Ed25519`) of `timestamp` + `body` against the
/// application's public key. Uses strict verification, which rejects malleable signatures.
pub fn signature(key: &VerifyingKey, signature_hex: &str, timestamp: &str, body: &[u8]) -> Result<(), Rejected> {
    let bytes: [u8; 64] =
        hex::decode(signature_hex.trim()).ok().and_then(|b| b.try_into().ok()).ok_or(Rejected::Malformed)?;
    let mut message = Vec::with_capacity(timestamp.len() + body.len());
    message.extend_from_slice(timestamp.as_bytes());
    message.extend_from_slice(body);
    key.verify_strict(&message, &Signature::from_bytes(&bytes)).map_err(|_| Rejected::BadSignature)
}

/// Checks that `timestamp` (Unix seconds) is within [`MAX_SKEW_SECS`] of `now`.
pub fn fresh(timestamp: &str, now: DateTime<Utc>) -> Result<(), Rejected> {
    let seconds: i64 = timestamp.trim().parse().map_err(|_| Rejected::Malformed)?;
    // Checked: `(now - seconds).abs()` wraps in release builds for timestamps near i64's ends.
    if !crate::chat::slack::verify::within_window(now.timestamp(), seconds, MAX_SKEW_SECS) {
        return Err(Rejected::Stale);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::Value;

    fn vector() -> Value {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/contracts/discord/ed25519-test-vector.json");
        let text = std::fs::read_to_string(path).expect("the shared contracts folder sits beside the repository");
        serde_json::from_str(&text).unwrap()
    }

    fn key(hex_key: &str) -> VerifyingKey {
        VerifyingKey::from_bytes(&hex::decode(hex_key).unwrap().try_into().unwrap()).unwrap()
    }

    #[test]
    fn rfc_8032_test_1_verifies() {
        let v = &vector()["rfc8032_test_1"];
        let key = key(v["public_key"].as_str().unwrap());
        let message = hex::decode(v["message_hex"].as_str().unwrap()).unwrap();
        // TEST 1 signs the empty message: no timestamp, no body.
        assert_eq!(signature(&key, v["signature"].as_str().unwrap(), "", &message), Ok(()));
        let mut flipped = v["signature"].as_str().unwrap().to_owned();
        flipped.replace_range(0..1, "f");
        assert_eq!(signature(&key, &flipped, "", &message), Err(Rejected::BadSignature));
    }

    #[test]
    fn a_discord_shaped_request_verifies_and_a_changed_body_does_not() {
        let v = &vector()["derived_discord_request"];
        let key = key(v["public_key_hex"].as_str().unwrap());
        let sig = v["headers"]["X-Signature-Ed25519"].as_str().unwrap();
        let ts = v["headers"]["X-Signature-Timestamp"].as_str().unwrap();
        let body = v["raw_body"].as_str().unwrap().as_bytes();
        assert_eq!(signature(&key, sig, ts, body), Ok(()));
        let tampered = v["tampered_body_must_fail"].as_str().unwrap().as_bytes();
        assert_eq!(signature(&key, sig, ts, tampered), Err(Rejected::BadSignature));
        assert_eq!(signature(&key, sig, "1700000001", body), Err(Rejected::BadSignature));
        assert_eq!(signature(&key, "not hex", ts, body), Err(Rejected::Malformed));
        assert_eq!(signature(&key, &sig[..64], ts, body), Err(Rejected::Malformed));
    }

    #[test]
    fn timestamps_outside_five_minutes_are_stale() {
        let now = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        assert_eq!(fresh("1700000000", now), Ok(()));
        assert_eq!(fresh("1699999700", now), Ok(()));
        assert_eq!(fresh("1700000300", now), Ok(()));
        assert_eq!(fresh("1699999699", now), Err(Rejected::Stale));
        assert_eq!(fresh("1700000301", now), Err(Rejected::Stale));
        assert_eq!(fresh("soon", now), Err(Rejected::Malformed));
    }

    #[test]
    fn timestamps_at_the_extremes_of_i64_are_stale_not_wrapped() {
        let now = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let wrapped = (1_700_000_000_i64 + i64::MIN).to_string();
        for ts in [i64::MIN.to_string(), i64::MAX.to_string(), wrapped, "-1".into(), "0".into()] {
            assert_eq!(fresh(&ts, now), Err(Rejected::Stale), "ts {ts}");
        }
        assert_eq!(fresh("-9223372036854775809", now), Err(Rejected::Malformed), "below i64::MIN");
    }
}
