//! Protobuf wire types of the go-pantheon gateway protocol.
//!
//! Every message, field number and package name matches go-pantheon (see
//! `spec/wire-protocol.md` §2–§5). The code under `src/gen/` is generated from `proto/` with the
//! pure-Rust `protox` compiler and checked in, so building needs no `protoc`; the `codegen` test
//! regenerates it and fails when it differs (`JANUS_REGENERATE=1 cargo test -p janus-proto --test
//! codegen` rewrites it).
//!
//! Every `bytes` field is a [`bytes::Bytes`], so decoding from a `Bytes` buffer borrows the payload
//! instead of copying it.
//!
//! The tonic client and server code of the tunnel and push services sits behind the `grpc` feature.

#![forbid(unsafe_code)]
#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// `packet`: the client envelope.
pub mod packet {
    include!("gen/packet.rs");
}

/// `message`: system-module (mod 1) messages.
pub mod message {
    include!("gen/message.rs");
}

/// `module`: module ids.
pub mod module {
    include!("gen/module.rs");
}

/// `sequence`: message ids inside each module.
pub mod sequence {
    include!("gen/sequence.rs");
}

/// `gate.intra.v1`
pub mod gate {
    pub mod intra {
        pub mod v1 {
            include!("gen/gate.intra.v1.rs");
        }
    }
}

/// `player.intra.v1`: the player tunnel.
pub mod player {
    pub mod intra {
        pub mod v1 {
            include!("gen/player.intra.v1.rs");
            #[cfg(feature = "grpc")]
            include!("gen/grpc/player.intra.v1.rs");
        }
    }
}

/// `room.intra.v1`: the room tunnel.
pub mod room {
    pub mod intra {
        pub mod v1 {
            include!("gen/room.intra.v1.rs");
            #[cfg(feature = "grpc")]
            include!("gen/grpc/room.intra.v1.rs");
        }
    }
}

/// `broadcaster.service.push.v1`: backend pushes (gRPC and Redis pub/sub).
pub mod broadcaster {
    pub mod service {
        pub mod push {
            pub mod v1 {
                include!("gen/broadcaster.service.push.v1.rs");
                #[cfg(feature = "grpc")]
                include!("gen/grpc/broadcaster.service.push.v1.rs");
            }
        }
    }
}

/// `janus.relay.v1`: the edge ↔ hub relay link (Janus's own protocol, see `janus_core::relay`).
pub mod janus {
    pub mod relay {
        pub mod v1 {
            include!("gen/janus.relay.v1.rs");
        }
    }
    /// `janus.resume.v1`: the session-resume extension of the handshake (`docs/resume.md`).
    pub mod resume {
        pub mod v1 {
            include!("gen/janus.resume.v1.rs");
        }
    }
}
