//! Reading events the raw way: plain values from the row, the payload and
//! the metadata decoded with serde, no validation.

use std::error::Error;

use rusqlite::Row;

use crate::model::{decode_raw, BankEvent};
use crate::shape::{RawMetadata, Shape};

/// The columns annals returns for an event, in the order
/// [`Envelope::from_row`] reads them.
pub(crate) const ENVELOPE_COLUMNS: &str = "event_type, payload, position, stream_id, version, \
                                           event_id, schema_version, metadata, recorded_at";

/// An event as the raw baseline reads it: what annals returns for an
/// event, as plain values, with the payload decoded.
#[allow(dead_code)]
pub(crate) struct Envelope {
    pub(crate) position: i64,
    pub(crate) stream_id: String,
    pub(crate) version: i64,
    pub(crate) event_id: Vec<u8>,
    pub(crate) schema_version: i64,
    pub(crate) metadata: MetadataColumn,
    pub(crate) recorded_at: i64,
    pub(crate) event: BankEvent,
}

/// The metadata column as the raw baseline reads it.
#[allow(dead_code)]
pub(crate) enum MetadataColumn {
    /// Decoded into the two ids (the realistic shape).
    Ids(Option<RawMetadata>),
    /// Kept as text, as earlier builds of the bench did (the small shape,
    /// where it is always NULL).
    Text(Option<String>),
}

impl Envelope {
    /// Reads a row selected with [`ENVELOPE_COLUMNS`].
    pub(crate) fn from_row(row: &Row<'_>, shape: Shape) -> Result<Envelope, Box<dyn Error>> {
        let event_type: String = row.get(0)?;
        let payload: String = row.get(1)?;
        let metadata = match shape {
            Shape::Realistic => MetadataColumn::Ids(
                row.get_ref(7)?
                    .as_str_or_null()?
                    .map(RawMetadata::decode)
                    .transpose()?,
            ),
            Shape::Small => MetadataColumn::Text(row.get(7)?),
        };
        Ok(Envelope {
            position: row.get(2)?,
            stream_id: row.get(3)?,
            version: row.get(4)?,
            event_id: row.get(5)?,
            schema_version: row.get(6)?,
            metadata,
            recorded_at: row.get(8)?,
            event: decode_raw(&event_type, &payload)?,
        })
    }
}
