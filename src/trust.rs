//! Trust in private CAs from ACM PCA: fetched by the controller (one fetch per CA for the whole
//! cluster, so sidecars need no ACM PCA permission), validated, refreshed, and served to Envoy
//! as SDS validation contexts. A failed fetch keeps the last good bundle.

pub mod fetch;
pub mod validate;
