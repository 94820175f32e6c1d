//! A read model built the raw way: the log read page by page in position
//! order, each payload decoded with serde, one upsert per event, and one
//! write transaction per page on a database of its own.

use std::error::Error;
use std::path::Path;

use rusqlite::{params, Connection, TransactionBehavior};

use crate::model::{decode_raw, BankEvent};

/// Creates the balances table (annals' projection creates the same).
pub(crate) const CREATE_BALANCES: &str = include_str!("balances.sql");
/// Adds one event to its stream's row (annals' projection runs the same).
pub(crate) const UPSERT_BALANCE: &str = include_str!("upsert_balance.sql");

/// The amount a balance row adds for `event`, as SQLite stores it.
pub(crate) fn balance_change(event: &BankEvent) -> Result<i64, std::num::TryFromIntError> {
    i64::try_from(event.amount())
}

/// Builds the balances of every stream of the log at `log` into a new
/// database at `model`, reading pages of `page` events. Each page is one
/// read (its own read transaction) and then one write transaction
/// ([`RawBalances::write_page`]). Returns how many events it handled.
pub(crate) fn build_balances(
    log: &Path,
    model: &Path,
    page: usize,
) -> Result<usize, Box<dyn Error>> {
    let log = super::open_read_only(log)?;
    let mut model = RawBalances::create(model)?;
    let mut select = log.prepare(include_str!("select_page.sql"))?;
    let limit = i64::try_from(page)?;
    let (mut after, mut handled) = (0i64, 0usize);
    let mut events: Vec<(String, BankEvent)> = Vec::with_capacity(page);
    loop {
        events.clear();
        let mut rows = select.query(params![after, limit])?;
        while let Some(row) = rows.next()? {
            after = row.get(0)?;
            let event = decode_raw(row.get_ref(2)?.as_str()?, row.get_ref(3)?.as_str()?)?;
            events.push((row.get(1)?, event));
        }
        // Done with the rows: the read transaction ends here.
        drop(rows);
        if events.is_empty() {
            break;
        }
        model.write_page(&events, after)?;
        handled += events.len();
        // A short page was read through the head.
        if events.len() < page {
            break;
        }
    }
    Ok(handled)
}

/// The balances model as the baseline writes it: an SQLite database of its
/// own in WAL mode with `synchronous = NORMAL`, as annals opens a read
/// model, and a progress row, as a projection has to keep one to go on
/// after a restart.
pub(crate) struct RawBalances {
    conn: Connection,
}

impl RawBalances {
    /// Creates the model's database at `path`.
    pub(crate) fn create(path: &Path) -> Result<RawBalances, rusqlite::Error> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(CREATE_BALANCES)?;
        conn.execute_batch(include_str!("progress.sql"))?;
        Ok(RawBalances { conn })
    }

    /// Adds a page of events, read up to position `after`: one `IMMEDIATE`
    /// write transaction holding an upsert per event and the new position.
    pub(crate) fn write_page(
        &mut self,
        events: &[(String, BankEvent)],
        after: i64,
    ) -> Result<(), Box<dyn Error>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut upsert = tx.prepare_cached(UPSERT_BALANCE)?;
            for (stream, event) in events {
                upsert.execute(params![stream, balance_change(event)?])?;
            }
        }
        tx.execute(include_str!("save_progress.sql"), [after])?;
        tx.commit()?;
        Ok(())
    }
}

/// The number of rows of a balances model, its events and its total: what
/// two builds of the same log must agree on.
pub(crate) fn balances_summary(model: &Path) -> Result<(i64, i64, i64), rusqlite::Error> {
    super::open_read_only(model)?.query_row(
        "SELECT count(*), coalesce(sum(events), 0), coalesce(sum(total), 0) FROM balances",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
}
