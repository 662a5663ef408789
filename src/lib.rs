pub mod api;
pub mod crds;
