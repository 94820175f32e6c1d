//! The store works on any runtime flavour, and outside tokio altogether.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

use annals_core::{EventStore, EventStoreExt, ExpectedVersion, NewEvent, Payload, StreamId};
use annals_sqlite::SqliteStore;

/// Wakes the thread that polls.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// The smallest executor: polls one future on this thread, parking between
/// polls. No tokio runtime is running.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    loop {
        match future.as_mut().poll(&mut context) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park(),
        }
    }
}

async fn append_and_read(store: &SqliteStore) -> Result<usize, Box<dyn std::error::Error>> {
    let stream = StreamId::new("account-1")?;
    let event = NewEvent::new("Opened", 1, Payload::from_json("{}")?)?;
    store
        .append_to_stream(&stream, ExpectedVersion::NoStream, vec![event])
        .await?;
    assert_eq!(store.head().await?.0, 1);
    Ok(store.read_stream_to_end(&stream).await?.len())
}

#[test]
fn store_works_outside_a_tokio_runtime() -> Result<(), Box<dyn std::error::Error>> {
    let read = block_on(async {
        let store = SqliteStore::open_temporary().await?;
        append_and_read(&store).await
    })?;
    assert_eq!(read, 1);
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn store_works_on_a_current_thread_runtime() -> Result<(), Box<dyn std::error::Error>> {
    let store = SqliteStore::open_temporary().await?;
    assert_eq!(append_and_read(&store).await?, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_works_on_a_multi_thread_runtime() -> Result<(), Box<dyn std::error::Error>> {
    let store = SqliteStore::open_temporary().await?;
    assert_eq!(append_and_read(&store).await?, 1);
    Ok(())
}
