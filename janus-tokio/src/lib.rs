//! The gateway on tokio. Not built yet: this crate only reserves its place in the workspace.
