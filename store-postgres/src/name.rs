//! The name of a store's schema: validated once, then quoted wherever SQL
//! names it.

use crate::error::OpenError;

/// A validated schema name, and its quoted form for SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SchemaName {
    name: String,
}

/// PostgreSQL's limit on identifiers (NAMEDATALEN - 1).
const MAX_IDENTIFIER: usize = 63;

impl SchemaName {
    pub(crate) fn new(name: &str) -> Result<Self, OpenError> {
        let refuse = |reason| OpenError::InvalidSchemaName {
            name: name.to_owned(),
            reason,
        };
        let mut bytes = name.bytes();
        match bytes.next() {
            None => return Err(refuse("it is empty")),
            Some(b'a'..=b'z' | b'_') => {}
            Some(_) => return Err(refuse("it must start with a lower-case letter or '_'")),
        }
        if !bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_')) {
            return Err(refuse(
                "it may hold only lower-case ASCII letters, digits and '_'",
            ));
        }
        if name.len() > MAX_IDENTIFIER {
            return Err(refuse("it is longer than 63 bytes"));
        }
        if name.starts_with("pg_") {
            return Err(refuse("names starting with pg_ are reserved by PostgreSQL"));
        }
        Ok(SchemaName {
            name: name.to_owned(),
        })
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.name
    }

    /// The name quoted as an SQL identifier. The rules above leave nothing
    /// to escape; the quotes keep it from ever being read as a keyword.
    pub(crate) fn quoted(&self) -> String {
        format!("\"{}\"", self.name)
    }

    /// The LISTEN/NOTIFY channel of the store's head: unique per schema,
    /// within the 63 bytes a channel name may have.
    pub(crate) fn channel(&self) -> String {
        let full = format!("annals_head_{}", self.name);
        if full.len() <= MAX_IDENTIFIER {
            return full;
        }
        // FNV-1a of the whole name keeps long names that share a start apart.
        let hash = self.name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        format!("annals_head_{}_{hash:016x}", &self.name[..34])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_follow_the_identifier_rules() {
        for good in ["annals", "_x", "a1_b2", &"a".repeat(63)] {
            assert!(SchemaName::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "Annals",
            "a-b",
            "a b",
            "a\"b",
            "a;drop",
            "pg_catalog",
            &"a".repeat(64),
            "é",
        ] {
            assert!(
                matches!(
                    SchemaName::new(bad),
                    Err(OpenError::InvalidSchemaName { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn channels_fit_and_differ_for_long_names_with_one_start() -> Result<(), OpenError> {
        let a = SchemaName::new(&format!("{}a", "x".repeat(62)))?;
        let b = SchemaName::new(&format!("{}b", "x".repeat(62)))?;
        assert!(a.channel().len() <= 63 && b.channel().len() <= 63);
        assert_ne!(a.channel(), b.channel());
        assert_eq!(SchemaName::new("orders")?.channel(), "annals_head_orders");
        Ok(())
    }
}
