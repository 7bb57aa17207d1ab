//! Where a message lives on a platform: plain data the store keeps and the engine and adapters
//! pass around (re-exported as `engine::MessageRef`).

/// A message on a platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct MessageRef {
    /// Channel id.
    pub channel: String,
    /// Message id (Slack `ts`, Discord snowflake).
    pub id: String,
}
