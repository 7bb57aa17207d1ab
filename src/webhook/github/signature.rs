//! Authenticity of GitHub deliveries: `X-Hub-Signature-256` is
//! `sha256=hex(HMAC-SHA256(secret, raw body))`. It is checked on the raw bytes before anything
//! is parsed, and compared in constant time.
//!
//! GitHub signs no timestamp, so a captured delivery could be sent again: the delivery dedupe
//! (on `X-GitHub-Delivery`) is what stops a replay from acting twice.

use crate::config::Secret;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header carrying the signature (lowercase, as `http` names headers).
pub const HEADER: &str = "x-hub-signature-256";

/// Why a delivery was rejected (logged; the sender only ever sees 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// No signature: the hook has no secret on GitHub's side, or it is not GitHub.
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    /// Not `sha256=` followed by hex digits.
    #[error("malformed X-Hub-Signature-256 header")]
    Malformed,
    /// The signature does not match the body.
    #[error("signature does not match")]
    Mismatch,
}

/// Checks one delivery's signature header against its raw body.
pub fn verify(secret: &Secret, header: Option<&str>, body: &[u8]) -> Result<(), Rejected> {
    let header = header.ok_or(Rejected::Missing)?;
    let given = header.trim().strip_prefix("sha256=").ok_or(Rejected::Malformed)?;
    let given = hex::decode(given).map_err(|_| Rejected::Malformed)?;
    // `verify_slice` compares in constant time (and refuses a wrong length).
    mac(secret, body).verify_slice(&given).map_err(|_| Rejected::Mismatch)
}

/// The header value GitHub would send for `body` (tests, and tools that replay on purpose).
pub fn sign(secret: &Secret, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(mac(secret, body).finalize().into_bytes()))
}

fn mac(secret: &Secret, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's documented example, from `tests/fixtures/contracts/github/`.
    fn vector() -> serde_json::Value {
        let path =
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/contracts/github/webhook-signature-test-vector.json");
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn githubs_signature_test_vector_passes() {
        let v = vector();
        let secret = Secret::new(v["secret"].as_str().unwrap());
        let body = v["payload"].as_str().unwrap().as_bytes();
        let header = v["expected_header"]["X-Hub-Signature-256"].as_str().unwrap();
        assert_eq!(sign(&secret, body), header);
        assert_eq!(header, format!("sha256={}", v["expected_signature"].as_str().unwrap()));
        assert_eq!(verify(&secret, Some(header), body), Ok(()));
        assert_eq!(verify(&secret, Some(&header.to_uppercase().replace("SHA256=", "sha256=")), body), Ok(()));
    }

    #[test]
    fn any_change_is_rejected() {
        let v = vector();
        let secret = Secret::new(v["secret"].as_str().unwrap());
        let body = v["payload"].as_str().unwrap().as_bytes();
        let header = v["expected_header"]["X-Hub-Signature-256"].as_str().unwrap();
        assert_eq!(verify(&secret, Some(header), b"Hello, World?"), Err(Rejected::Mismatch));
        assert_eq!(verify(&Secret::new("another secret"), Some(header), body), Err(Rejected::Mismatch));
        assert_eq!(verify(&secret, Some(&header[..header.len() - 2]), body), Err(Rejected::Mismatch));
        assert_eq!(verify(&secret, Some(header.trim_start_matches("sha256=")), body), Err(Rejected::Malformed));
        assert_eq!(verify(&secret, Some("sha256=not-hex"), body), Err(Rejected::Malformed));
        assert_eq!(
            verify(&secret, Some("sha1=7d38cdd689735b008b3c702edd92eea23791c5f6"), body),
            Err(Rejected::Malformed)
        );
        assert_eq!(verify(&secret, None, body), Err(Rejected::Missing));
    }
}
