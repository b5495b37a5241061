//! The `/admin/*` endpoints (see the parent module for the table).

use std::{net::SocketAddr, time::Duration};

use hyper::StatusCode;
use janus_core::CloseReason;
use serde::Serialize;
use tracing::{info, warn};

use super::{Reply, json, respond, text};
use crate::gateway::{
    Shared,
    command::{ConnCmd, SessionInfo},
    mailbox::TrySendError,
    metrics::RedisOp,
};

/// How long a session may take to describe itself.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn bad_uid(uid: &str) -> Reply {
    text(StatusCode::BAD_REQUEST, format!("{uid:?} is not a uid"))
}

#[derive(Serialize)]
struct Lookup {
    uid: i64,
    /// `here`, `elsewhere` (per the gate table) or `nowhere`.
    location: &'static str,
    /// This gateway's endpoint, or the one holding the uid.
    gateway: Option<String>,
    session: Option<SessionInfo>,
}

/// `GET /admin/sessions/{uid}`.
pub(super) async fn session(shared: &Shared, uid: &str, query: &str) -> Reply {
    let Ok(uid) = uid.parse::<i64>() else {
        return bad_uid(uid);
    };
    if let Some(handle) = shared.registry.get(uid) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if handle.tx.try_send(ConnCmd::Describe(tx)).is_ok() {
            if let Ok(Ok(info)) = tokio::time::timeout(DESCRIBE_TIMEOUT, rx).await {
                return json(
                    StatusCode::OK,
                    &Lookup {
                        uid,
                        location: "here",
                        gateway: Some(shared.endpoint.to_string()),
                        session: Some(info),
                    },
                );
            }
        }
    }
    let Some(gate) = &shared.gate else {
        return json(
            StatusCode::NOT_FOUND,
            &Lookup {
                uid,
                location: "nowhere",
                gateway: None,
                session: None,
            },
        );
    };
    let color = query_value(query, "color").unwrap_or(&shared.color);
    match gate.holder(uid, color).await {
        Ok(Some(other)) => json(
            StatusCode::OK,
            &Lookup {
                uid,
                location: if other == *shared.endpoint {
                    "here"
                } else {
                    "elsewhere"
                },
                gateway: Some(other),
                session: None,
            },
        ),
        Ok(None) => json(
            StatusCode::NOT_FOUND,
            &Lookup {
                uid,
                location: "nowhere",
                gateway: None,
                session: None,
            },
        ),
        Err(e) => {
            shared.metrics.redis_error(RedisOp::Lookup);
            text(
                StatusCode::BAD_GATEWAY,
                format!("not here, and the gate table did not answer: {e}"),
            )
        }
    }
}

/// `POST /admin/sessions/{uid}/kick?code=…`.
pub(super) fn kick(shared: &Shared, uid: &str, query: &str, remote: SocketAddr) -> Reply {
    let Ok(uid) = uid.parse::<i64>() else {
        return bad_uid(uid);
    };
    let reason = match query_value(query, "code").unwrap_or("admin_kick_out") {
        "admin_kick_out" => CloseReason::AdminKickOut,
        "banned" => CloseReason::Banned,
        other => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("code {other:?}: use admin_kick_out or banned"),
            );
        }
    };
    let Some(handle) = shared.registry.get(uid) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("uid {uid} has no session here"),
        );
    };
    match handle.tx.try_send(ConnCmd::Close(reason)) {
        Ok(()) => {
            shared.metrics.kicked(reason);
            info!(%remote, uid, code = reason.as_str(), "session kicked by an operator");
            text(
                StatusCode::OK,
                format!("uid {uid} kicked ({})", reason.as_str()),
            )
        }
        Err(TrySendError::Closed(_)) => text(
            StatusCode::NOT_FOUND,
            format!("uid {uid} has no session here"),
        ),
        Err(TrySendError::Full(_)) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("uid {uid}: its queue is full; try again"),
        ),
    }
}

/// `POST /admin/drain`.
pub(super) fn drain(shared: &std::sync::Arc<Shared>, remote: SocketAddr) -> Reply {
    if shared.start_drain() {
        warn!(%remote, "drain started by an operator");
        text(StatusCode::ACCEPTED, "draining")
    } else {
        text(StatusCode::ACCEPTED, "already draining")
    }
}

/// `GET /admin/config`.
pub(super) fn config(shared: &Shared) -> Reply {
    let source = shared
        .ops
        .source
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let Some(source) = source else {
        return text(
            StatusCode::NOT_FOUND,
            "this gateway was not started from a configuration file",
        );
    };
    let pending = shared
        .ops
        .restart_pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut body = format!(
        "# file: {}\n# hash: {}\n",
        source.path.display(),
        source.hash
    );
    if !pending.is_empty() {
        body.push_str("# changed, waiting for a restart (the running values differ):\n");
        for key in pending {
            body.push_str(&format!("#   {key}\n"));
        }
    }
    body.push_str(&source.config.redacted_yaml());
    respond(StatusCode::OK, "application/yaml", body)
}

/// `GET /admin/backends`.
pub(super) fn backends(shared: &Shared) -> Reply {
    json(StatusCode::OK, &shared.backends.status())
}

/// `POST /admin/reload`.
pub(super) async fn reload(shared: &Shared, remote: SocketAddr) -> Reply {
    info!(%remote, "reload requested over the admin API");
    match crate::gateway::reload::reload(shared).await {
        Ok(report) => json(StatusCode::OK, &report),
        Err(e) => {
            let status = if matches!(e, crate::gateway::ReloadError::NoFile) {
                StatusCode::CONFLICT
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            text(status, e.to_string())
        }
    }
}
