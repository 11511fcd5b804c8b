//! The commonest event of an Anthropic stream, a text delta, read by the one-pass scan
//! (`json_scan`): serde's internally tagged enums (the event's `type`, then its delta's) buffer
//! every member as `Content` before choosing a variant, ~2,000 instructions a chunk of a
//! translated 50-chunk stream under callgrind.

use crate::providers::json_scan::named as members;

/// The text of `data` when it is plainly a `content_block_delta` event carrying a
/// `text_delta`: what serde_json reads from it as `AnthropicEvent`. None for anything else,
/// or anything less plain (a member given twice, an escaped name or tag, an index that is not
/// a plain integer): the caller reads those the general way.
pub(super) fn text_delta(data: &str) -> Option<String> {
    let [kind, index, delta] = members(data, ["type", "index", "delta"])?;
    if kind? != r#""content_block_delta""# {
        return None;
    }
    index?.parse::<usize>().ok()?;
    let [kind, text] = members(delta?, ["type", "text"])?;
    if kind? != r#""text_delta""# {
        return None;
    }
    let text = text?;
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(plain) if !plain.contains('\\') => Some(plain.to_string()),
        _ => serde_json::from_str(text).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{AnthropicEvent, BlockDelta};
    use super::*;

    /// The text serde_json reads, when it reads a text delta.
    fn serde(data: &str) -> Option<String> {
        match serde_json::from_str::<AnthropicEvent>(data).ok()? {
            AnthropicEvent::ContentBlockDelta {
                delta: BlockDelta::TextDelta { text },
                ..
            } => Some(text),
            _ => None,
        }
    }

    const SAMPLES: &[&str] = &[
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#,
        r#"{"delta":{"text":"tab\there \"q\" \u00e9 😀","type":"text_delta"},"index":12,"type":"content_block_delta"}"#,
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\""}}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":3}}"#,
    ];

    #[test]
    fn text_deltas_are_read_as_serde_json_reads_them() {
        assert_eq!(text_delta(SAMPLES[0]).as_deref(), Some("Hello"));
        assert_eq!(text_delta(SAMPLES[1]), serde(SAMPLES[1]));
        assert!(text_delta(SAMPLES[1]).is_some());
        assert_eq!(
            text_delta(SAMPLES[2]),
            None,
            "another delta: the general way"
        );
        assert_eq!(text_delta(SAMPLES[3]), None);
    }

    #[test]
    fn less_plain_events_are_left_to_serde_json() {
        for data in [
            r#"{"type":"content_block_delta","type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}"#,
            r#"{"type":"content_block_delta","index":-1,"delta":{"type":"text_delta","text":"x"}}"#,
            r#"{"type":"content_block_delta","index":1e0,"delta":{"type":"text_delta","text":"x"}}"#,
            r#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"x"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":5}}"#,
            r#"{"type":"content_block_delt\u0061","index":0,"delta":{"type":"text_delta","text":"x"}}"#,
        ] {
            assert_eq!(text_delta(data), None, "{data}");
        }
    }

    /// Each sample changed a byte at a time: whatever text this reads, serde_json reads the
    /// same.
    #[test]
    fn never_reads_what_serde_json_would_not() {
        let swaps = b"\"\\{}[]:,-.0123456789 x\x01tfnlu_";
        let mut read = 0;
        for sample in SAMPLES {
            for data in crate::providers::json_scan::tests::single_changes(sample, swaps) {
                if let Some(text) = text_delta(&data) {
                    read += 1;
                    assert_eq!(Some(text), serde(&data), "{data}");
                }
            }
        }
        assert!(read > 500, "the mutations exercised it: {read}");
    }
}
