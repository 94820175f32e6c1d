//! A TCP proxy between a store and the test server that can go deaf and
//! cut its connections on command: a connection lost at the worst moment,
//! after the server has committed but before the reply reached the store.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use annals_postgres::tokio_postgres::config::{Config, Host};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use super::TestResult;

/// One proxied connection.
struct Link {
    /// Set: what the server sends is dropped instead of passed on.
    deaf: Arc<AtomicBool>,
    /// The port of the proxy's connection to the server, as the server
    /// shows it in `pg_stat_activity.client_port`.
    server_side_port: u16,
    tasks: Vec<AbortHandle>,
}

/// The proxy; its links end when it is dropped.
pub struct Proxy {
    port: u16,
    links: Arc<Mutex<Vec<Link>>>,
    /// Set: new connections are closed at once, as by a server that is down.
    down: Arc<AtomicBool>,
    accept: AbortHandle,
}

impl Proxy {
    /// A proxy on a free local port to `server` (`host:port`).
    pub async fn start(server: String) -> TestResult<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let links: Arc<Mutex<Vec<Link>>> = Arc::default();
        let accepted = Arc::clone(&links);
        let down = Arc::new(AtomicBool::new(false));
        let refusing = Arc::clone(&down);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if refusing.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(upstream) = TcpStream::connect(&server).await else {
                    continue;
                };
                let server_side_port = upstream.local_addr().map_or(0, |a| a.port());
                let deaf = Arc::new(AtomicBool::new(false));
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = upstream.into_split();
                let to_server = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                });
                let muted = Arc::clone(&deaf);
                let to_client = tokio::spawn(async move {
                    let mut buffer = vec![0u8; 16 * 1024];
                    while let Ok(n @ 1..) = server_read.read(&mut buffer).await {
                        if muted.load(Ordering::SeqCst) {
                            continue;
                        }
                        if client_write.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                if let Ok(mut links) = accepted.lock() {
                    links.push(Link {
                        deaf,
                        server_side_port,
                        tasks: vec![to_server.abort_handle(), to_client.abort_handle()],
                    });
                }
            }
        })
        .abort_handle();
        Ok(Proxy {
            port,
            links,
            down,
            accept,
        })
    }

    /// A proxy in front of the server of `url`, and the URL through it;
    /// `None` when the server is not reached over TCP.
    pub async fn in_front_of(url: &str) -> TestResult<Option<(Proxy, String)>> {
        let config = Config::from_str(url)?;
        let (Some(Host::Tcp(host)), port) =
            (config.get_hosts().first(), config.get_ports().first())
        else {
            return Ok(None);
        };
        let proxy = Proxy::start(format!("{host}:{}", port.copied().unwrap_or(5432))).await?;
        let mut through = format!("host=127.0.0.1 port={}", proxy.port);
        if let Some(user) = config.get_user() {
            through += &format!(" user='{user}'");
        }
        if let Some(db) = config.get_dbname() {
            through += &format!(" dbname='{db}'");
        }
        if let Some(password) = config.get_password() {
            through += &format!(" password='{}'", String::from_utf8_lossy(password));
        }
        Ok(Some((proxy, through)))
    }

    /// The port the proxy listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server-side ports of the connections open now.
    pub fn server_side_ports(&self) -> Vec<i32> {
        self.links
            .lock()
            .map(|links| {
                links
                    .iter()
                    .map(|l| i32::from(l.server_side_port))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// From now on, nothing the server sends on the connections open now
    /// reaches the store.
    pub fn go_deaf(&self) {
        if let Ok(links) = self.links.lock() {
            for link in links.iter() {
                link.deaf.store(true, Ordering::SeqCst);
            }
        }
    }

    /// Closes every connection open now and refuses new ones until
    /// [`Proxy::come_up`], as a server that went down.
    pub fn go_down(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.cut();
    }

    /// Lets new connections through again.
    pub fn come_up(&self) {
        self.down.store(false, Ordering::SeqCst);
    }

    /// Closes every connection open now; later ones pass as usual.
    pub fn cut(&self) {
        if let Ok(mut links) = self.links.lock() {
            for link in links.drain(..) {
                for task in link.tasks {
                    task.abort();
                }
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}
