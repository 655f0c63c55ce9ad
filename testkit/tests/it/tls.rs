//! TLS: the TCP server and the gateway serve TLS when given a certificate;
//! a TLS client logs in and round-trips a message, HTTPS answers, and a
//! plain-text client gets nowhere.

use std::sync::Arc;
use std::time::Duration;

use rtmc::client::Connection;
use rtmc::protocol::ServerFrame;
use rtmc_testkit::{raw, Pipeline, PipelineOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// A self-signed certificate for localhost/127.0.0.1, written as PEM files.
fn certificate() -> (String, String, CertificateDer<'static>) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let dir = std::env::temp_dir().join(format!("rtmc-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    (
        cert_path.display().to_string(),
        key_path.display().to_string(),
        cert.cert.der().clone(),
    )
}

fn connector(root: CertificateDer<'static>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(root).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_clients_chat_and_https_answers() {
    let (cert, key, der) = certificate();
    let (c2, k2) = (cert.clone(), key.clone());
    let p = Pipeline::shared(PipelineOptions::default().configure(move |c| {
        c.server.tls_cert_path = cert;
        c.server.tls_key_path = key;
        c.gateway.tls_cert_path = c2;
        c.gateway.tls_key_path = k2;
        c.server.login_timeout_ms = 2_000;
    }))
    .await
    .unwrap();
    let user = p.add_user("tls").await.unwrap();
    let tls = connector(der);
    let name = ServerName::try_from("localhost").unwrap();

    // TCP server over TLS: login, send, receive our own broadcast.
    let tcp = tokio::net::TcpStream::connect(p.server_addr(0))
        .await
        .unwrap();
    let stream = tls.connect(name.clone(), tcp).await.unwrap();
    let mut c = Connection::from_io(stream, raw::MAX_FRAME_BYTES);
    raw::login(&mut c, &user).await.unwrap();
    c.send(&rtmc::protocol::ClientCommand::Send {
        room: None,
        to: None,
        body: "secret".into(),
        message_id: Some("tls-1".into()),
        sent_at_us: None,
    })
    .await
    .unwrap();
    let mut acked = false;
    let mut delivered = false;
    while !(acked && delivered) {
        match c.recv_timeout(Duration::from_secs(20)).await.unwrap() {
            ServerFrame::SendAck { message_id, .. } => acked = message_id == "tls-1",
            ServerFrame::Broadcast(b) => delivered = b.message_id == "tls-1" && b.body == "secret",
            other => panic!("unexpected {other:?}"),
        }
    }

    // A plain-text client cannot talk to the TLS port.
    let mut plain = p.raw_connection(0).await.unwrap();
    let r = raw::login(&mut plain, &user).await;
    assert!(r.is_err(), "plain text login on a TLS port succeeded");

    // HTTPS gateway.
    let addr = p.gateway_url().trim_start_matches("http://").to_owned();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut https = tls.connect(name, tcp).await.unwrap();
    https
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    https.read_to_string(&mut response).await.ok();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ok\n"), "{response}");
}
