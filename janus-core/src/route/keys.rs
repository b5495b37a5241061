//! The names go-pantheon derives from a tunnel kind and an object: the gRPC method a tunnel
//! opens, the backend service that serves the kind, and the Redis route-table key (spec §4.1,
//! §4.4). Adapters build every such string here.

/// The bidirectional-stream method of a tunnel kind: `/<kind>.intra.v1.TunnelService/Tunnel`
/// (`/player.intra.v1.TunnelService/Tunnel`, `/room.intra.v1.TunnelService/Tunnel`).
pub fn tunnel_method(kind: &str) -> String {
    format!("/{kind}.intra.v1.TunnelService/Tunnel")
}

/// The registry and route-table name of the service behind a kind, when the configuration does
/// not name one: roma's `roma.<kind>.service`.
pub fn default_service(kind: &str) -> String {
    format!("roma.{kind}.service")
}

/// A route-table key: `r_<name>_{<color>}_{<id>}` (fabrica-kit's `routetable` format). `name` is
/// the table's service (`janus.gate.interface` for the gate table, `roma.player.service` ...),
/// `id` the uid or oid. The braces are Redis Cluster hash tags, so one colour's keys share a slot.
pub fn route_key(name: &str, color: &str, id: i64) -> String {
    format!("r_{name}_{{{color}}}_{{{id}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_go_pantheon() {
        assert_eq!(
            tunnel_method("player"),
            "/player.intra.v1.TunnelService/Tunnel"
        );
        assert_eq!(default_service("room"), "roma.room.service");
        assert_eq!(
            route_key("janus.gate.interface", "local", 10001),
            "r_janus.gate.interface_{local}_{10001}"
        );
        assert_eq!(
            route_key("roma.player.service", "blue", -3),
            "r_roma.player.service_{blue}_{-3}"
        );
    }
}
