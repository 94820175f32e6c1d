//! The shape of the events a run writes and reads.
//!
//! `Realistic` (the default) is what an application stores: payloads of
//! about 200 bytes (an account holder's name and address, a bank transfer's
//! reference) and about 110 bytes of metadata (a correlation id and a
//! causation id per command). `Small` is the shape of earlier builds of the
//! bench: short payloads and no metadata, so that their figures can still
//! be compared with this one's.

use annals::{CommandContext, Metadata};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The shape of the events of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// About 200 bytes of payload and 110 of metadata.
    Realistic,
    /// Payloads of 15 to 40 bytes, no metadata.
    Small,
}

impl Shape {
    /// The name on the command line and in the output.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Shape::Realistic => "realistic",
            Shape::Small => "small",
        }
    }

    /// The owner of a newly opened account.
    pub(crate) fn owner(self, account: usize) -> String {
        match self {
            Shape::Realistic => format!(
                "Ada Lovelace (customer {account:08}), 12 St James's Square, London SW1Y 4JH, \
                 United Kingdom; retail current account, statements by e-mail, \
                 opened at branch 0042 by advisor 0017"
            ),
            Shape::Small => format!("owner {account}"),
        }
    }

    /// The reference of a deposit.
    pub(crate) fn reference(self, amount: u64) -> String {
        match self {
            Shape::Realistic => format!(
                "SEPA credit transfer {amount:012} from DE89370400440532013000 (COBADEFFXXX), \
                 end-to-end id E2E-{amount:016X}, invoice INV-2024-{amount:08}, \
                 remittance: monthly savings plan"
            ),
            Shape::Small => format!("deposit of {amount}"),
        }
    }

    /// The context of one command: fresh correlation and causation ids,
    /// as a request handler would set them.
    pub(crate) fn context(self) -> CommandContext {
        match self {
            Shape::Realistic => CommandContext::new()
                .correlation_id(Uuid::now_v7())
                .causation_id(Uuid::now_v7()),
            Shape::Small => CommandContext::new(),
        }
    }

    /// The metadata of one event appended directly to the store.
    pub(crate) fn metadata(self) -> Metadata {
        match self {
            Shape::Realistic => Metadata {
                correlation_id: Some(Uuid::now_v7()),
                causation_id: Some(Uuid::now_v7()),
                ..Metadata::default()
            },
            Shape::Small => Metadata::default(),
        }
    }

    /// The metadata column the raw baseline writes for one command: the
    /// same JSON annals stores for the same ids.
    pub(crate) fn raw_metadata(self) -> Option<String> {
        match self {
            Shape::Realistic => {
                let ids = RawMetadata {
                    correlation_id: Uuid::now_v7(),
                    causation_id: Uuid::now_v7(),
                };
                // Two UUIDs always serialize.
                Some(serde_json::to_string(&ids).expect("two ids serialize"))
            }
            Shape::Small => None,
        }
    }
}

/// Metadata as code without the framework reads and writes it: the two ids.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RawMetadata {
    pub(crate) correlation_id: Uuid,
    pub(crate) causation_id: Uuid,
}

impl RawMetadata {
    /// Decodes a stored metadata column.
    pub(crate) fn decode(text: &str) -> Result<RawMetadata, serde_json::Error> {
        serde_json::from_str(text)
    }
}
