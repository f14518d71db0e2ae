//! One Socket.IO client over a raw WebSocket: the Engine.IO handshake, the namespace
//! connect with a token, ping answers, and binary attachments put back together.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::proto;

/// A received Socket.IO packet (text without the Engine.IO `4`) and its attachments.
#[derive(Debug)]
pub struct Incoming {
    pub text: String,
    pub bins: Vec<Bytes>,
}

impl Incoming {
    pub fn packet(&self) -> Option<proto::Packet<'_>> {
        proto::parse(&self.text)
    }
}

pub struct Conn {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// A binary packet still waiting for some of its attachments.
    partial: Option<(Incoming, usize)>,
}

/// The engine endpoint for a base URL such as `http://127.0.0.1:8003`.
pub fn ws_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    let base = base
        .strip_prefix("http://")
        .map(|rest| format!("ws://{rest}"))
        .or_else(|| base.strip_prefix("https://").map(|r| format!("wss://{r}")))
        .unwrap_or_else(|| base.to_string());
    format!("{base}/realtime/ws/?EIO=4&transport=websocket")
}

impl Conn {
    /// Opens the WebSocket, reads the Engine.IO open packet and connects to the main
    /// namespace with `token`; fails on `connect_error`.
    pub async fn connect(ws_url: &str, token: &str, deadline: Duration) -> anyhow::Result<Conn> {
        tokio::time::timeout(deadline, Self::connect_inner(ws_url, token))
            .await
            .map_err(|_| anyhow!("connect timed out"))?
    }

    async fn connect_inner(ws_url: &str, token: &str) -> anyhow::Result<Conn> {
        // Small buffers: ten thousand clients live in this one process.
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let (ws, _) = tokio_tungstenite::connect_async_with_config(ws_url, Some(config), true)
            .await
            .context("websocket handshake")?;
        let mut conn = Conn { ws, partial: None };
        match conn.ws.next().await {
            Some(Ok(Message::Text(t))) if t.starts_with('0') => {}
            other => bail!("expected the Engine.IO open packet, got {other:?}"),
        }
        conn.send_text(format!("0{{\"token\":\"{token}\"}}"))
            .await?;
        loop {
            let msg = conn.next().await?;
            match msg.packet().map(|p| p.kind) {
                Some(0) => return Ok(conn),
                Some(4) => bail!("connect_error: {}", msg.text),
                // Events sent right after connect (`authenticated`) may not come
                // before the connect packet's answer; anything else before it is odd.
                _ => continue,
            }
        }
    }

    /// Sends one Socket.IO packet (without the Engine.IO prefix).
    pub async fn send_text(&mut self, packet: String) -> anyhow::Result<()> {
        self.ws.send(Message::text(format!("4{packet}"))).await?;
        Ok(())
    }

    /// Sends a packet with one binary attachment: the text, then the attachment.
    pub async fn send_with_binary(&mut self, packet: String, bin: Bytes) -> anyhow::Result<()> {
        self.ws.feed(Message::text(format!("4{packet}"))).await?;
        self.ws.feed(Message::binary(bin)).await?;
        self.ws.flush().await?;
        Ok(())
    }

    /// The next Socket.IO packet, with its attachments. Engine.IO pings are answered
    /// here. Cancel-safe: a partly received binary packet stays in `self`.
    pub async fn next(&mut self) -> anyhow::Result<Incoming> {
        loop {
            let msg = self
                .ws
                .next()
                .await
                .ok_or_else(|| anyhow!("connection closed"))??;
            match msg {
                Message::Text(t) => {
                    let t = t.as_str();
                    match t.as_bytes().first() {
                        Some(b'2') => self.ws.send(Message::text("3")).await?,
                        Some(b'4') => {
                            let incoming = Incoming {
                                text: t[1..].to_string(),
                                bins: Vec::new(),
                            };
                            let needs = incoming.packet().map_or(0, |p| p.attachments);
                            if needs == 0 {
                                return Ok(incoming);
                            }
                            self.partial = Some((incoming, needs));
                        }
                        Some(b'1') => bail!("server closed the engine session"),
                        _ => {}
                    }
                }
                Message::Binary(b) => {
                    if let Some((mut incoming, needs)) = self.partial.take() {
                        incoming.bins.push(b);
                        if incoming.bins.len() == needs {
                            return Ok(incoming);
                        }
                        self.partial = Some((incoming, needs));
                    }
                }
                Message::Close(_) => bail!("connection closed"),
                _ => {}
            }
        }
    }

    /// Waits for the ack with this id; other packets meanwhile go to `backlog`.
    pub async fn wait_ack(
        &mut self,
        id: u64,
        deadline: Duration,
        backlog: &mut Vec<Incoming>,
    ) -> anyhow::Result<Incoming> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let msg = tokio::time::timeout_at(until, self.next())
                .await
                .map_err(|_| anyhow!("no ack {id} in time"))??;
            match msg.packet() {
                Some(p) if (p.kind == 3 || p.kind == 6) && p.id == Some(id) => return Ok(msg),
                _ => backlog.push(msg),
            }
        }
    }

    /// Sends the Engine.IO close packet and ends the WebSocket.
    pub async fn close(mut self) {
        let _ = self.ws.send(Message::text("1")).await;
        let _ = self.ws.close(None).await;
    }
}
