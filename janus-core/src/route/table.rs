//! Module id → tunnel kind, and the oid rule that turns a packet's `obj` into a tunnel key.

use std::sync::Arc;

use super::{RouteError, keys::tunnel_method};
use crate::system::ROOM_MODULE;

/// Most tunnel kinds one [`RouteTable`] can hold. Kinds are a handful of backend services
/// (player, room, team, ...), so a `u8` id is plenty and keeps [`TunnelKey`] small.
pub const MAX_TUNNEL_KINDS: usize = 256;

/// Longest accepted kind name, in bytes. Names end up in config files, logs and metric labels.
pub const MAX_KIND_NAME_LEN: usize = 32;

/// Which backend service a tunnel goes to: a small id handed out by a [`RouteTable`].
///
/// [`PLAYER`](Self::PLAYER) and [`ROOM`](Self::ROOM) exist in every table; further kinds come from
/// [`RouteTable::add_kind`]. The id is local to the gateway (upstream's tunnel "type"); it never
/// goes on the wire, so kinds can be numbered in configuration order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct TunnelKind(u8);

impl TunnelKind {
    /// Player tunnels (upstream type 0): one per session, keyed by the session uid.
    pub const PLAYER: TunnelKind = TunnelKind(0);
    /// Room tunnels (upstream type 1): one per room the session talks to, keyed by the room id.
    pub const ROOM: TunnelKind = TunnelKind(1);

    /// The numeric id, for compact maps and metrics.
    pub const fn id(self) -> u8 {
        self.0
    }
}

/// How a tunnel kind derives its oid (the backend object the tunnel is bound to) from a packet.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum OidRule {
    /// Player-like: the oid is always the session uid. A packet's `obj` must be 0 (meaning "me") or
    /// the uid itself. Upstream accepted any `obj`, which let a client open a tunnel as another
    /// player and kick them off with ConflictingLogin (spec §4.2); we reject it.
    SessionUid,
    /// Room-like: the oid is the packet's `obj`; an `obj` of 0 means "me" and becomes the session
    /// uid, as upstream does for every module (spec §10: room list and create-room requests carry
    /// no object). The backend checks that the player may talk to that object.
    Object,
}

/// One tunnel inside a session: a bidirectional stream to the backend that owns `oid`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct TunnelKey {
    /// The backend service.
    pub kind: TunnelKind,
    /// The object on that service (`x-md-global-oid`).
    pub oid: i64,
}

/// Where a client packet goes: the tunnel, and the `obj` to forward in the `TunnelRequest`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Routed {
    /// The tunnel to send the packet on (opened on first use).
    pub key: TunnelKey,
    /// The `obj` field for the backend: `uid` when the client sent 0 to a player kind.
    pub obj: i64,
}

/// Why a [`RouteTable`] could not be configured as asked. Configuration errors, raised at start-up.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RouteConfigError {
    /// Two kinds with one name would make config lookups ambiguous.
    #[error("tunnel kind {name:?} is already defined")]
    DuplicateKind {
        /// The repeated name.
        name: String,
    },
    /// The table already holds [`MAX_TUNNEL_KINDS`] kinds.
    #[error("too many tunnel kinds (at most {max})")]
    TooManyKinds {
        /// The limit, [`MAX_TUNNEL_KINDS`].
        max: usize,
    },
    /// Names must be 1..=[`MAX_KIND_NAME_LEN`] bytes of `a-z`, `0-9`, `_` or `-`, so that they are
    /// safe as metric labels and unambiguous in config.
    #[error("invalid tunnel kind name {name:?}")]
    InvalidKindName {
        /// The rejected name.
        name: String,
    },
    /// A kind that this table did not hand out (it came from another table).
    #[error("tunnel kind {kind:?} is not defined in this table")]
    UnknownKind {
        /// The foreign kind.
        kind: TunnelKind,
    },
}

#[derive(Clone, Debug)]
struct KindEntry {
    name: Arc<str>,
    rule: OidRule,
    /// `/<name>.intra.v1.TunnelService/Tunnel`, built once.
    method: Arc<str>,
}

impl KindEntry {
    fn new(name: &str, rule: OidRule) -> Self {
        Self {
            name: name.into(),
            rule,
            method: tunnel_method(name).into(),
        }
    }
}

/// Module id (`Packet.mod`) → [`TunnelKind`], and the per-kind [`OidRule`].
///
/// The default matches upstream (spec §4.2): module 6 (Room) goes to [`TunnelKind::ROOM`], every
/// other module, unknown ones included, to [`TunnelKind::PLAYER`]. Configuration can add kinds
/// ([`add_kind`](Self::add_kind)) and move modules to them ([`map_module`](Self::map_module)).
#[derive(Clone, Debug)]
pub struct RouteTable {
    /// Indexed by `TunnelKind::id`.
    kinds: Vec<KindEntry>,
    /// Modules not listed here go to [`TunnelKind::PLAYER`]; sorted by module. A handful of
    /// entries, looked up for every packet: a binary search over a flat array beats a tree.
    modules: Vec<(i32, TunnelKind)>,
}

impl Default for RouteTable {
    fn default() -> Self {
        Self::new()
    }
}

impl RouteTable {
    /// The upstream routing: `player` (kinds 0, [`OidRule::SessionUid`]) and `room` (kind 1,
    /// [`OidRule::Object`]), with module 6 → room and everything else → player.
    pub fn new() -> Self {
        let kinds = vec![
            KindEntry::new("player", OidRule::SessionUid),
            KindEntry::new("room", OidRule::Object),
        ];
        let modules = vec![(ROOM_MODULE, TunnelKind::ROOM)];
        RouteTable { kinds, modules }
    }

    /// Defines a new kind (e.g. `"team"`, [`OidRule::Object`]) and returns its id.
    pub fn add_kind(&mut self, name: &str, rule: OidRule) -> Result<TunnelKind, RouteConfigError> {
        let valid_char =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
        if name.is_empty() || name.len() > MAX_KIND_NAME_LEN || !name.chars().all(valid_char) {
            return Err(RouteConfigError::InvalidKindName {
                name: name.to_owned(),
            });
        }
        if self.kind_by_name(name).is_some() {
            return Err(RouteConfigError::DuplicateKind {
                name: name.to_owned(),
            });
        }
        let id = u8::try_from(self.kinds.len()).map_err(|_| RouteConfigError::TooManyKinds {
            max: MAX_TUNNEL_KINDS,
        })?;
        self.kinds.push(KindEntry::new(name, rule));
        Ok(TunnelKind(id))
    }

    /// Sends `module` to `kind` from now on (replacing its previous kind).
    pub fn map_module(&mut self, module: i32, kind: TunnelKind) -> Result<(), RouteConfigError> {
        if !self.contains(kind) {
            return Err(RouteConfigError::UnknownKind { kind });
        }
        let at = self.modules.binary_search_by_key(&module, |&(m, _)| m);
        match (at, kind == TunnelKind::PLAYER) {
            // The implicit default; keeping the table minimal keeps lookups short.
            (Ok(i), true) => {
                self.modules.remove(i);
            }
            (Err(_), true) => {}
            (Ok(i), false) => {
                if let Some(entry) = self.modules.get_mut(i) {
                    entry.1 = kind;
                }
            }
            (Err(i), false) => self.modules.insert(i, (module, kind)),
        }
        Ok(())
    }

    /// The kind called `name`, for configuration.
    pub fn kind_by_name(&self, name: &str) -> Option<TunnelKind> {
        let index = self.kinds.iter().position(|k| &*k.name == name)?;
        u8::try_from(index).ok().map(TunnelKind)
    }

    /// The kind's name (`"player"`, `"room"`, ...), or `""` for a kind from another table.
    pub fn kind_name(&self, kind: TunnelKind) -> &str {
        self.kinds.get(usize::from(kind.0)).map_or("", |k| &k.name)
    }

    /// The kind's name and gRPC method, shared (an open-tunnel event carries them without
    /// copying); `None` for a kind from another table.
    pub fn kind_names(&self, kind: TunnelKind) -> Option<(Arc<str>, Arc<str>)> {
        self.kinds
            .get(usize::from(kind.0))
            .map(|k| (Arc::clone(&k.name), Arc::clone(&k.method)))
    }

    /// The kind's oid rule. A kind from another table gets [`OidRule::SessionUid`], the rule that
    /// cannot reach another player's objects.
    pub fn oid_rule(&self, kind: TunnelKind) -> OidRule {
        self.kinds
            .get(usize::from(kind.0))
            .map_or(OidRule::SessionUid, |k| k.rule)
    }

    /// Whether `kind` was handed out by this table.
    pub fn contains(&self, kind: TunnelKind) -> bool {
        usize::from(kind.0) < self.kinds.len()
    }

    /// Every kind of this table, in id order.
    pub fn kinds(&self) -> impl Iterator<Item = TunnelKind> + '_ {
        (0..=u8::MAX).zip(&self.kinds).map(|(id, _)| TunnelKind(id))
    }

    /// The kind a module's packets go to.
    pub fn kind_for_module(&self, module: i32) -> TunnelKind {
        match self.modules.binary_search_by_key(&module, |&(m, _)| m) {
            Ok(i) => self
                .modules
                .get(i)
                .map_or(TunnelKind::PLAYER, |&(_, kind)| kind),
            Err(_) => TunnelKind::PLAYER,
        }
    }

    /// Routes one client packet of session `uid`: the tunnel it goes on and the `obj` to forward.
    ///
    /// For every kind `obj` 0 means "me" and becomes `uid`, as upstream does (spec §4.2, §10).
    /// Player kinds: any other value but `uid` is [`RouteError::ObjectNotOwned`] (upstream let a
    /// client name another player here). Object kinds: `obj` is the oid.
    pub fn route(&self, module: i32, obj: i64, uid: i64) -> Result<Routed, RouteError> {
        self.route_to(self.kind_for_module(module), obj, uid)
    }

    /// [`route`](Self::route) to a kind chosen by other means than the module (a routing
    /// filter): the same oid rules, applied for `kind`. A kind from another table gets the
    /// player rule, so it can never reach another player's objects.
    pub fn route_to(&self, kind: TunnelKind, obj: i64, uid: i64) -> Result<Routed, RouteError> {
        let obj = if obj == 0 { uid } else { obj };
        match self.oid_rule(kind) {
            OidRule::SessionUid if obj != uid => Err(RouteError::ObjectNotOwned { obj, uid }),
            OidRule::SessionUid | OidRule::Object => Ok(Routed {
                key: TunnelKey { kind, oid: obj },
                obj,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const UID: i64 = 10001;

    #[test]
    fn default_table_matches_upstream() {
        let table = RouteTable::new();
        assert_eq!(table.kind_for_module(6), TunnelKind::ROOM);
        for module in [0, 1, 2, 3, 4, 5, 7, 99, -1, i32::MAX] {
            assert_eq!(
                table.kind_for_module(module),
                TunnelKind::PLAYER,
                "module {module}"
            );
        }
        assert_eq!(table.kind_name(TunnelKind::PLAYER), "player");
        assert_eq!(table.kind_name(TunnelKind::ROOM), "room");
        assert_eq!(table.oid_rule(TunnelKind::PLAYER), OidRule::SessionUid);
        assert_eq!(table.oid_rule(TunnelKind::ROOM), OidRule::Object);
        assert_eq!(
            table.kinds().collect::<Vec<_>>(),
            [TunnelKind::PLAYER, TunnelKind::ROOM]
        );
    }

    #[test]
    fn player_obj_zero_becomes_uid() {
        let routed = RouteTable::new().route(3, 0, UID).unwrap();
        assert_eq!(
            routed,
            Routed {
                key: TunnelKey {
                    kind: TunnelKind::PLAYER,
                    oid: UID
                },
                obj: UID
            }
        );
        assert_eq!(RouteTable::new().route(3, UID, UID).unwrap(), routed);
    }

    #[test]
    fn player_cannot_address_another_player() {
        // Spec §4.2: upstream opened a tunnel as the victim and kicked them off.
        let err = RouteTable::new().route(3, 4242, UID).unwrap_err();
        assert_eq!(
            err,
            RouteError::ObjectNotOwned {
                obj: 4242,
                uid: UID
            }
        );
    }

    #[test]
    fn room_uses_obj_and_zero_means_the_uid() {
        let table = RouteTable::new();
        let routed = table.route(6, 77, UID).unwrap();
        assert_eq!(
            routed,
            Routed {
                key: TunnelKey {
                    kind: TunnelKind::ROOM,
                    oid: 77
                },
                obj: 77
            }
        );
        // obj 0 is the session uid for rooms too (spec §10; room list, create room)
        let own = table.route(6, 0, UID).unwrap();
        assert_eq!(
            own,
            Routed {
                key: TunnelKey {
                    kind: TunnelKind::ROOM,
                    oid: UID
                },
                obj: UID
            }
        );
    }

    #[test]
    fn configured_kinds() {
        let mut table = RouteTable::new();
        let team = table.add_kind("team", OidRule::Object).unwrap();
        assert_eq!(team.id(), 2);
        assert_eq!(table.kind_by_name("team"), Some(team));
        assert_eq!(table.kind_by_name("guild"), None);
        table.map_module(20, team).unwrap();
        assert_eq!(
            table.route(20, 5, UID).unwrap().key,
            TunnelKey { kind: team, oid: 5 }
        );

        // Moving the room module back to the player kind.
        table.map_module(6, TunnelKind::PLAYER).unwrap();
        assert_eq!(table.route(6, 0, UID).unwrap().key.kind, TunnelKind::PLAYER);

        assert_eq!(
            table.add_kind("team", OidRule::SessionUid),
            Err(RouteConfigError::DuplicateKind {
                name: "team".into()
            })
        );
        assert_eq!(
            table.add_kind("player", OidRule::SessionUid),
            Err(RouteConfigError::DuplicateKind {
                name: "player".into()
            })
        );
        for bad in [
            "",
            "Team",
            "a b",
            "x".repeat(MAX_KIND_NAME_LEN + 1).as_str(),
        ] {
            assert_eq!(
                table.add_kind(bad, OidRule::Object),
                Err(RouteConfigError::InvalidKindName { name: bad.into() })
            );
        }
    }

    #[test]
    fn kind_count_is_bounded() {
        let mut table = RouteTable::new();
        for i in 2..MAX_TUNNEL_KINDS {
            table.add_kind(&format!("k{i}"), OidRule::Object).unwrap();
        }
        assert_eq!(
            table.add_kind("one-more", OidRule::Object),
            Err(RouteConfigError::TooManyKinds {
                max: MAX_TUNNEL_KINDS
            })
        );
        assert_eq!(table.kinds().count(), MAX_TUNNEL_KINDS);
    }

    #[test]
    fn foreign_kinds_are_refused() {
        let mut big = RouteTable::new();
        let team = big.add_kind("team", OidRule::Object).unwrap();
        let mut small = RouteTable::new();
        assert_eq!(
            small.map_module(1, team),
            Err(RouteConfigError::UnknownKind { kind: team })
        );
        assert_eq!(small.kind_name(team), "");
        assert_eq!(small.oid_rule(team), OidRule::SessionUid);
    }

    proptest! {
        /// The module table answers as a map would, whatever order modules are mapped in.
        #[test]
        fn module_table_behaves_as_a_map(ops in proptest::collection::vec((-3i32..12, 0u8..3), 0..40)) {
            let mut table = RouteTable::new();
            let team = table.add_kind("team", OidRule::Object).unwrap();
            let kinds = [TunnelKind::PLAYER, TunnelKind::ROOM, team];
            let mut model = std::collections::BTreeMap::from([(ROOM_MODULE, TunnelKind::ROOM)]);
            for (module, k) in ops {
                let kind = kinds[usize::from(k)];
                table.map_module(module, kind).unwrap();
                model.insert(module, kind);
            }
            for module in -4..13 {
                let expected = model.get(&module).copied().unwrap_or(TunnelKind::PLAYER);
                prop_assert_eq!(table.kind_for_module(module), expected);
            }
            prop_assert!(table.modules.windows(2).all(|w| w[0].0 < w[1].0));
            prop_assert!(table.modules.iter().all(|&(_, kind)| kind != TunnelKind::PLAYER));
        }

        /// Whatever a client sends, a player tunnel is only ever keyed by its own uid.
        #[test]
        fn player_tunnels_are_always_the_session_uid(module: i32, obj: i64, uid: i64) {
            let table = RouteTable::new();
            match table.route(module, obj, uid) {
                Ok(routed) if routed.key.kind == TunnelKind::PLAYER => {
                    prop_assert_eq!(routed.key.oid, uid);
                    prop_assert_eq!(routed.obj, uid);
                }
                Ok(routed) => {
                    prop_assert_eq!(module, 6);
                    let expected = if obj == 0 { uid } else { obj };
                    prop_assert_eq!(routed.key.oid, expected);
                    prop_assert_eq!(routed.obj, expected);
                }
                Err(RouteError::ObjectNotOwned { .. }) => prop_assert!(obj != 0 && obj != uid),
                Err(other) => prop_assert!(false, "unexpected {other:?}"),
            }
        }
    }
}
