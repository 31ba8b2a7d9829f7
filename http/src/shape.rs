//! What shape of JSON a type reads at its top level, found without any JSON: the type is
//! asked to deserialize itself from a deserializer that fails at once, naming the method
//! the type called. Serde fills a struct from an array by position; Prefect (pydantic)
//! answers 422 "value is not a valid dict" instead, and this tells the two cases apart.

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// The deserializer method a type asked for.
#[derive(Debug)]
struct Asked(&'static str);

impl std::fmt::Display for Asked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Asked {}

impl de::Error for Asked {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Asked("custom")
    }
}

struct Probe;

macro_rules! asks {
    ($($method:ident),* $(,)?) => {
        $(fn $method<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Asked> {
            Err(Asked(stringify!($method)))
        })*
    };
}

impl<'de> Deserializer<'de> for Probe {
    type Error = Asked;

    asks!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, _: V) -> Result<V::Value, Asked> {
        Err(Asked("deserialize_unit_struct"))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, _: V) -> Result<V::Value, Asked> {
        Err(Asked("deserialize_newtype_struct"))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value, Asked> {
        Err(Asked("deserialize_tuple"))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        _: V,
    ) -> Result<V::Value, Asked> {
        Err(Asked("deserialize_tuple_struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Asked> {
        Err(Asked("deserialize_struct"))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Asked> {
        Err(Asked("deserialize_enum"))
    }
}

/// Whether `T` reads a JSON object (a struct, or a map) at its top level.
pub fn reads_an_object<'de, T: Deserialize<'de>>() -> bool {
    matches!(
        T::deserialize(Probe),
        Err(Asked("deserialize_struct" | "deserialize_map"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(serde::Deserialize, schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Body {
        name: String,
    }

    #[derive(serde::Deserialize, schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Flattened {
        #[serde(flatten)]
        rest: HashMap<String, serde_json::Value>,
    }

    #[test]
    fn structs_and_maps_read_objects_lists_and_values_do_not() {
        assert!(reads_an_object::<Body>());
        assert!(reads_an_object::<Flattened>());
        assert!(reads_an_object::<HashMap<String, i32>>());
        assert!(!reads_an_object::<Vec<Body>>());
        assert!(!reads_an_object::<serde_json::Value>());
        assert!(!reads_an_object::<Option<Body>>());
    }
}
