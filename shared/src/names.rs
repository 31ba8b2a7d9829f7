//! Random two-word run names, like Prefect's `generate_slug(2)` ("witty-lemur").

use rand::seq::IndexedRandom;

const ADJECTIVES: &[&str] = &[
    "able", "agile", "amber", "ancient", "arrogant", "azure", "bold", "brave", "bright", "brisk",
    "calm", "certain", "cheerful", "clever", "cobalt", "cosmic", "crimson", "curious", "daring",
    "dapper", "eager", "electric", "elegant", "emerald", "fancy", "fearless", "fiery", "gentle",
    "giant", "glowing", "golden", "graceful", "hairy", "happy", "hidden", "honest", "humble",
    "icy", "important", "jolly", "keen", "kind", "lively", "loyal", "lucky", "magenta", "mellow",
    "merry", "mighty", "modest", "nimble", "noble", "olive", "orange", "patient", "polite",
    "proud", "quick", "quiet", "rapid", "rebel", "robust", "rustic", "sage", "scarlet", "shiny",
    "silver", "smart", "snobbish", "solid", "spry", "stellar", "steady", "sturdy", "swift",
    "teal", "tidy", "tough", "tranquil", "true", "upbeat", "valiant", "vivid", "warm", "wise",
    "witty", "xanthic", "zealous", "zippy",
];

const ANIMALS: &[&str] = &[
    "aardvark", "albatross", "alligator", "alpaca", "anteater", "antelope", "armadillo", "badger",
    "bat", "bear", "beaver", "bison", "bobcat", "buffalo", "camel", "caracal", "cheetah",
    "chipmunk", "cobra", "condor", "cougar", "coyote", "crane", "dingo", "dolphin", "donkey",
    "eagle", "echidna", "eel", "elk", "falcon", "ferret", "finch", "flamingo", "fox", "gazelle",
    "gecko", "gibbon", "giraffe", "gopher", "grouse", "hare", "hawk", "hedgehog", "heron",
    "hippo", "hyena", "ibex", "iguana", "impala", "jackal", "jaguar", "kangaroo", "kingfisher",
    "koala", "lemur", "leopard", "lion", "llama", "lynx", "macaw", "marmot", "mink", "mole",
    "moose", "narwhal", "newt", "ocelot", "octopus", "okapi", "orca", "otter", "owl", "panda",
    "panther", "parrot", "pelican", "penguin", "puffin", "python", "quail", "rabbit", "raccoon",
    "raven", "reindeer", "rhino", "salamander", "seal", "skunk", "sloth", "squid", "stingray",
    "swan", "tapir", "tiger", "toucan", "turtle", "vulture", "walrus", "wallaby", "weasel",
    "wolf", "wombat", "yak", "zebra",
];

pub fn run_name() -> String {
    let mut rng = rand::rng();
    let adjective = ADJECTIVES.choose(&mut rng).copied().unwrap_or("brave");
    let animal = ANIMALS.choose(&mut rng).copied().unwrap_or("otter");
    format!("{adjective}-{animal}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_two_lowercase_words() {
        let name = super::run_name();
        let parts: Vec<_> = name.split('-').collect();
        assert_eq!(parts.len(), 2);
        assert!(name.chars().all(|c| c.is_ascii_lowercase() || c == '-'));
    }
}
