//! TLS set-up: rustls with ring as the process-wide crypto provider.
//!
//! reqwest is built with `rustls-no-provider` (and azure_core shares that reqwest), so
//! every HTTPS client in the process takes rustls's default provider, which this module
//! installs. Every HTTP client of this crate starts from [`client_builder`], which installs
//! it first; azure_identity builds its own clients, so the credential set-up calls
//! [`install_crypto_provider`] itself. Both are idempotent and cheap after the first call.

use std::sync::Once;

/// Installs ring as rustls's default crypto provider, once per process. Does nothing
/// when a provider is already installed (by an earlier call, or by an embedding program).
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // `Err` only means another provider was installed first: keep that one.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// `reqwest::Client::builder()`, with the crypto provider installed: reqwest panics
/// building a client without one.
pub fn client_builder() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_clients_build_once_the_provider_is_installed() {
        install_crypto_provider();
        // reqwest panics here when no provider is installed.
        let client = client_builder().https_only(true).build();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
        assert!(client.is_ok(), "{client:?}");
    }
}
