//! What a plan is: plain serde data with a format version, rendered by the CLI and saved
//! with `--out`. It holds no secret values: sensitive attributes appear only as flags.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::address::Address;

/// The plan JSON format this version writes (`schemas/plan.schema.json`).
pub const PLAN_FORMAT_VERSION: u32 = 1;

/// A reviewed set of changes, in dependency order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Plan {
    pub format_version: u32,
    /// The wallaroo version that made the plan.
    pub wallaroo_version: String,
    pub mode: PlanMode,
    /// The lockfile's lineage and serial the plan was made against (`None`: no lockfile yet).
    pub lineage: Option<String>,
    pub state_serial: Option<u64>,
    /// Salt of the sensitive hashes behind this plan; a new lockfile takes it over.
    pub salt: String,
    /// Hash of the live state read for the plan; apply refuses the plan if it changed.
    pub live_fingerprint: String,
    /// Hash of the desired resources (sensitive values salted and hashed); apply refuses
    /// the plan if the spec now asks for something else.
    pub desired_fingerprint: String,
    /// `--target` addresses, empty for a full plan.
    #[serde(default)]
    pub targets: Vec<Address>,
    /// `--exclude` addresses: left out with what depends on them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excludes: Vec<Address>,
    /// Things worth saying that do not stop the plan (a certificate near expiry).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Managed resources that changed outside wallaroo since the last apply.
    #[serde(default)]
    pub drift: Vec<Drift>,
    /// What the plan's maker resolved before planning and needs back to apply exactly this
    /// plan, as top-level keys of its own (wallaroo's model keeps the images it mirrors, with
    /// their digest pins, under `images`). The engine only carries it.
    #[serde(flatten)]
    #[schemars(skip)]
    pub inputs: serde_json::Map<String, Value>,
    /// Every resource in scope, in the order apply may run them (dependencies first).
    pub changes: Vec<ResourceChange>,
    pub summary: Summary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PlanMode {
    /// Make live match the spec.
    Apply,
    /// Delete everything the lockfile manages.
    Destroy,
}

/// What happens to one resource.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    NoOp,
    Create,
    Update,
    /// Delete, then create (an attribute that forces replacement changed).
    Replace,
    Delete,
    /// Read-only (outputs): read after its dependencies are applied.
    Read,
}

impl Action {
    /// Terraform's symbols: `+ ~ -/+ - <=`.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::NoOp => " ",
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
            Action::Read => "<=",
        }
    }

    pub fn is_change(self) -> bool {
        matches!(
            self,
            Action::Create | Action::Update | Action::Replace | Action::Delete
        )
    }
}

/// One resource's planned action with its attribute-level changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResourceChange {
    pub address: Address,
    pub kind: String,
    pub action: Action,
    /// What must be applied first (for deletes: what must be deleted first).
    #[serde(default)]
    pub depends_on: Vec<Address>,
    /// Changed attributes (all attributes for create and delete), key-level for maps.
    #[serde(default)]
    pub attributes: Vec<AttrChange>,
    /// It exists already but is not in the lockfile: apply records it (and applies only
    /// what differs).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopted: bool,
}

/// One attribute (or one key of a map attribute) that changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AttrChange {
    /// `content`, `labels["wallaroo.ai/node-purpose"]`, `values.ingress_mode`.
    pub path: String,
    /// `null` when absent before, or when sensitive.
    pub before: Option<Value>,
    /// `null` when absent after, or when sensitive.
    pub after: Option<Value>,
    /// Values are hidden; only the fact of a change is shown.
    #[serde(default)]
    pub sensitive: bool,
    #[serde(default)]
    pub forces_replacement: bool,
}

/// A managed resource whose live state no longer matches what was last applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Drift {
    pub address: Address,
    pub kind: String,
    /// The resource was deleted outside wallaroo.
    pub deleted: bool,
    #[serde(default)]
    pub attributes: Vec<AttrChange>,
}

/// Counts in Terraform's words: a replace adds one and destroys one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
    pub read: usize,
    /// Resources found already in place and taken into the lockfile.
    #[serde(default)]
    pub adopt: usize,
}

impl Plan {
    /// Whether applying the plan would change anything (adoptions change the lockfile).
    pub fn has_changes(&self) -> bool {
        self.changes
            .iter()
            .any(|c| c.action.is_change() || c.adopted)
    }

    pub fn change(&self, address: &Address) -> Option<&ResourceChange> {
        self.changes.iter().find(|c| &c.address == address)
    }
}

impl Summary {
    pub fn of(changes: &[ResourceChange]) -> Summary {
        let mut s = Summary::default();
        for c in changes {
            if c.adopted {
                s.adopt += 1;
            }
            match c.action {
                Action::Create => s.add += 1,
                Action::Update => s.change += 1,
                Action::Replace => {
                    s.add += 1;
                    s.destroy += 1;
                }
                Action::Delete => s.destroy += 1,
                Action::Read => s.read += 1,
                Action::NoOp => {}
            }
        }
        s
    }
}

/// The JSON Schema of a plan (`schemas/plan.schema.json`).
pub fn plan_schema() -> Value {
    let mut schema = schemars::schema_for!(Plan).to_value();
    schema["$id"] = Value::String("https://wallaroo.dev/schemas/plan.schema.json".into());
    schema["description"] = Value::String(
        "A wallaroo plan, as printed by `wallaroo plan --json` and saved by `--out`.".into(),
    );
    schema
}
