//! Access tokens a server must refuse, made from a real one: unsigned
//! (`alg: none`), signed with a foreign key, of another algorithm, tampered
//! with, and expired (signed with the server's own key).

use jsonwebtoken::{Algorithm, EncodingKey, Header};

/// Each bad token with the name of what is wrong with it. `good` is a real
/// token of user 1; `secret` is the server's signing secret.
pub fn forged(good: &str, secret: &[u8]) -> Vec<(&'static str, String)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = serde_json::json!({ "sub": 1, "iat": now, "exp": now + 600 });
    let none_header = serde_json::json!({ "alg": "none", "typ": "JWT" }).to_string();
    let unsigned = format!(
        "{}.{}.",
        base64url(&none_header),
        base64url(&claims.to_string())
    );
    let sign = |algorithm, claims: &serde_json::Value, key: &[u8]| {
        jsonwebtoken::encode(
            &Header::new(algorithm),
            claims,
            &EncodingKey::from_secret(key),
        )
        .expect("signing a token")
    };
    let foreign = sign(Algorithm::HS256, &claims, b"not the key");
    let hs512 = sign(Algorithm::HS512, &claims, secret);
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[1] =
        base64url(&serde_json::json!({ "sub": 2, "iat": now, "exp": now + 600 }).to_string());
    let tampered = parts.join(".");
    let expired = sign(
        Algorithm::HS256,
        &serde_json::json!({ "sub": 1, "iat": now - 7200, "exp": now - 3600 }),
        secret,
    );
    vec![
        ("alg none", unsigned),
        ("foreign key", foreign),
        ("HS512 with the server's key", hs512),
        ("tampered", tampered),
        ("expired", expired),
    ]
}

/// Unpadded base64url, as JWTs use.
fn base64url(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}
