//! Unguessable tokens from the operating system's generator.

/// 32 random bytes as 64 hex characters.
pub(crate) fn token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random generator is available");
    crate::config::hex(&bytes)
}
