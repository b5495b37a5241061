//! The mio edge node. Not built yet: see ARCHITECTURE.md ("janus-mio: the edge").
