//! Helpers for tests that run against a real server: the server's URL
//! from `ANNALS_PG_URL`, and stores in fresh schemas that are dropped when
//! the test is done.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::{OpenError, PostgresOptions, PostgresStore};

/// The environment variable that names the test server.
pub const URL_VARIABLE: &str = "ANNALS_PG_URL";

/// The test server's URL, or `None` after printing a note that `test` is
/// skipped because `ANNALS_PG_URL` is not set.
pub fn url_or_skip(test: &str) -> Option<String> {
    match std::env::var(URL_VARIABLE) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("{URL_VARIABLE} is not set: skipping {test} (it needs PostgreSQL)");
            None
        }
    }
}

/// A schema name no other test run uses: the process id, a counter and
/// the time.
pub fn unique_schema(prefix: &str) -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Stores in fresh schemas of one server, each schema dropped by
/// [`Schemas::drop_all`]. Only the names are kept: a store's connections
/// go when the test lets go of it, so a suite of many cases never holds
/// more than the cases running at once.
#[derive(Debug)]
pub struct Schemas {
    url: String,
    prefix: String,
    opened: Mutex<Vec<String>>,
}

impl Schemas {
    /// Stores on the server at `url`, in schemas named from `prefix`.
    pub fn new(url: impl Into<String>, prefix: &str) -> Schemas {
        Schemas {
            url: url.into(),
            prefix: prefix.to_owned(),
            opened: Mutex::new(Vec::new()),
        }
    }

    /// The options of a store in a fresh schema (a small pool, a quick
    /// head poll), to adjust before [`Schemas::open`].
    pub fn options(&self) -> PostgresOptions {
        PostgresStore::options()
            .url(self.url.clone())
            .schema(unique_schema(&self.prefix))
            .pool_size(4)
            .head_poll_interval(std::time::Duration::from_millis(200))
    }

    /// A store in a fresh schema.
    pub async fn store(&self) -> Result<PostgresStore, OpenError> {
        self.open(self.options()).await
    }

    /// Opens a store with `options`; its schema is dropped with the rest.
    pub async fn open(&self, options: PostgresOptions) -> Result<PostgresStore, OpenError> {
        if let Ok(mut opened) = self.opened.lock() {
            if !opened.contains(&options.schema) {
                opened.push(options.schema.clone());
            }
        }
        options.connect().await
    }

    /// Drops every schema opened so far.
    pub async fn drop_all(&self) {
        let opened = self
            .opened
            .lock()
            .map(|mut o| std::mem::take(&mut *o))
            .unwrap_or_default();
        for schema in opened {
            if let Err(e) = drop_schema(&self.url, &schema).await {
                eprintln!("could not drop schema {schema}: {e}");
            }
        }
    }
}

/// Drops `schema` on the server at `url`, with everything in it.
pub async fn drop_schema(url: &str, schema: &str) -> Result<(), Box<dyn std::error::Error>> {
    let (name, config) = PostgresStore::options().url(url).schema(schema).check()?;
    Ok(crate::schema::drop_schema(&config, &name).await?)
}
