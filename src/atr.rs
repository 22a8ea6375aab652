//! placeholder until the ATR decoder lands
#[derive(Debug, Clone, serde::Serialize)]
pub struct Atr;
#[derive(Debug, Clone, thiserror::Error)]
#[error("x")]
pub struct AtrError;
impl Atr {
    pub fn parse_lenient(_b: &[u8]) -> (Option<Atr>, Vec<AtrError>) {
        (None, vec![])
    }
    pub fn describe(&self) -> Vec<String> {
        vec![]
    }
}
pub fn lookup_names(_a: &Atr) -> Vec<String> {
    vec![]
}
