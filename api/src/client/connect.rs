//! How a [`Client`] reaches the API server: the address (`http://` or `https://`), the
//! channel with its keep-alives, TLS through the swappable rustls configuration, and the
//! bearer token added to every call; credentials are reloaded for new connections.

use std::sync::Arc;
use std::time::Duration;

use corral_proto as pb;
use parking_lot::RwLock;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use super::dial::Dialer;
use super::servers::Servers;
use super::{Client, Error, Result, Transport};
use crate::credentials::Credentials;
use crate::rules::limits;
use crate::tls;

/// Adds `authorization: Bearer <token>` to every call when the client has a token; the token
/// is swapped with [`Client::reload_credentials`].
#[derive(Clone, Default)]
pub struct Bearer(Arc<RwLock<Option<MetadataValue<Ascii>>>>);

impl Bearer {
    fn set(&self, token: Option<&str>) -> Result<()> {
        let value = token
            .map(|t| format!("Bearer {t}").parse::<MetadataValue<Ascii>>())
            .transpose()
            .map_err(|_| Error::BadToken)?;
        *self.0.write() = value;
        Ok(())
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = self.0.read().as_ref() {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

fn endpoint(server: &str) -> Result<Endpoint> {
    Ok(Endpoint::from_shared(server.to_string())
        .map_err(|source| Error::Connect {
            server: server.to_string(),
            source,
        })?
        // Each dial attempt is bounded by the dialer, per server.
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        // A server host that vanished (powered off, cut off) is given up within 15 s, so the
        // next connection goes to another server well inside a node's 40 s grace.
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        // Output a reader leaves unread holds only its own stream.
        .initial_stream_window_size(crate::rules::limits::CLIENT_STREAM_WINDOW)
        .initial_connection_window_size(crate::rules::limits::CLIENT_CONNECTION_WINDOW))
}

/// A failed eager connect in the words of its TLS error, when it was one.
fn connect_error(server: &str, source: tonic::transport::Error) -> Error {
    match tls::find_tls_error(&source) {
        Some(t) => Error::Tls {
            server: server.to_string(),
            source: Box::new(t.clone()),
        },
        None => Error::Connect {
            server: server.to_string(),
            source,
        },
    }
}

impl Client {
    /// Connects to `http://HOST:PORT` (a bare `HOST:PORT` is accepted too), without TLS or
    /// credentials: only a control plane started with `--insecure-plaintext` answers.
    pub async fn connect(server: &str) -> Result<Self> {
        Self::connect_with(server, &Credentials::default()).await
    }

    /// A plaintext client whose connection is made on first use and re-made after failures.
    pub fn connect_lazy(server: &str) -> Result<Self> {
        Self::connect_lazy_with(server, &Credentials::default())
    }

    /// Connects with `creds`: TLS verifying the server against `creds.ca_pem` when it is
    /// set (`https://`), the client certificate when there is one, the bearer token on every
    /// call when there is one.
    pub async fn connect_with(server: &str, creds: &Credentials) -> Result<Self> {
        Self::build(server, creds, "the client's credentials", false).await
    }

    /// As [`Client::connect_with`], connecting on first use and again after failures.
    pub fn connect_lazy_with(server: &str, creds: &Credentials) -> Result<Self> {
        Self::build_lazy(server, creds, "the client's credentials")
    }

    /// Connects with the current context of the kubeconfig at `path` (`server` overrides
    /// its address when given).
    pub fn connect_kubeconfig_lazy(path: &std::path::Path, server: Option<&str>) -> Result<Self> {
        let (file_server, creds) =
            crate::kubeconfig::load(path).map_err(|e| Error::Kubeconfig(Box::new(e)))?;
        let server = server.filter(|s| !s.is_empty()).unwrap_or(&file_server);
        Self::build_lazy(server, &creds, &format!("kubeconfig {}", path.display()))
    }

    /// As [`Client::connect_with`]; errors name `ca_source` as where the CA came from.
    pub async fn connect_with_source(
        server: &str,
        creds: &Credentials,
        ca_source: &str,
    ) -> Result<Self> {
        Self::build(server, creds, ca_source, false).await
    }

    async fn build(server: &str, creds: &Credentials, src: &str, lazy: bool) -> Result<Self> {
        if lazy {
            return Self::build_lazy(server, creds, src);
        }
        let (endpoint, servers, dialer, slot) = Self::prepare(server, creds, src)?;
        let channel = endpoint
            .connect_with_connector(dialer)
            .await
            .map_err(|e| connect_error(&servers.first(), e))?;
        Self::from_channel(channel, servers, creds, slot, src)
    }

    fn build_lazy(server: &str, creds: &Credentials, src: &str) -> Result<Self> {
        let (endpoint, servers, dialer, slot) = Self::prepare(server, creds, src)?;
        let channel = endpoint.connect_with_connector_lazy(dialer);
        Self::from_channel(channel, servers, creds, slot, src)
    }

    /// `server` is one address or several, comma-separated.
    fn prepare(
        server: &str,
        creds: &Credentials,
        src: &str,
    ) -> Result<(Endpoint, Servers, Dialer, Option<tls::ConfigSlot>)> {
        let secure = creds.ca_pem.is_some();
        let servers = Servers::parse(server, secure)?;
        // The dialer picks the server; tonic only needs a URI of the scheme it dials itself
        // (built with a TLS feature, which etcd-client enables, it refuses https:// without
        // its own TLS settings).
        let first = servers.first();
        let dial = match first.strip_prefix("https://") {
            Some(rest) => format!("http://{rest}"),
            None => first.clone(),
        };
        let endpoint = endpoint(&dial)?;
        let slot = if secure {
            let config = tls::client_config(creds, src).map_err(|source| Error::Tls {
                server: first.clone(),
                source: Box::new(source),
            })?;
            Some(Arc::new(RwLock::new(config)))
        } else {
            None
        };
        let dialer = Dialer::new(servers.clone(), slot.clone().map(|s| (s, src)));
        Ok((endpoint, servers, dialer, slot))
    }

    fn from_channel(
        channel: Channel,
        servers: Servers,
        creds: &Credentials,
        tls: Option<tls::ConfigSlot>,
        src: &str,
    ) -> Result<Self> {
        let bearer = Bearer::default();
        bearer.set(creds.token.as_deref())?;
        let transport = InterceptedService::new(channel, bearer.clone());
        let api = pb::api_client::ApiClient::new(transport.clone())
            .max_decoding_message_size(limits::MAX_RESPONSE_MESSAGE)
            .max_encoding_message_size(limits::MAX_REQUEST_MESSAGE);
        Ok(Self {
            api,
            transport,
            server: servers.first(),
            servers,
            bearer,
            tls,
            ca_source: src.into(),
        })
    }

    /// Swaps the credentials new connections use (after a certificate renewal) and the token
    /// every call sends; open connections keep their handshake.
    pub fn reload_credentials(&self, creds: &Credentials) -> Result<()> {
        if let Some(slot) = &self.tls {
            let config =
                tls::client_config(creds, &self.ca_source).map_err(|source| Error::Tls {
                    server: self.server.clone(),
                    source: Box::new(source),
                })?;
            *slot.write() = config;
        }
        self.bearer.set(creds.token.as_deref())
    }

    /// The shared connection, for other generated clients (the agent tunnel).
    pub fn transport(&self) -> Transport {
        self.transport.clone()
    }
}
