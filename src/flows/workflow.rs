//! Workflows: a graph of nodes (input, llm, template, condition, http, merge, output) saved as
//! readable YAML: the nodes and edges, with canvas positions in a separate `layout:` block so
//! that diffs of the logic stay clean. This module is the graph and its rules; running a node's
//! call is the proxy's job.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::template;

/// A run may not have more nodes than this.
pub const MAX_NODES: usize = 50;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workflow {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Input name → type.
    #[serde(default)]
    pub inputs: BTreeMap<String, InputType>,
    pub nodes: Vec<Node>,
    #[serde(default)]
    pub edges: Vec<Edge>,
    /// Where the console draws each node; not part of the logic.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub layout: BTreeMap<String, Position>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    String,
    Number,
    Boolean,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub x: i64,
    pub y: i64,
}

/// (Fields a node's type does not have are ignored: serde cannot refuse them through the
/// flattened type tag.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    #[serde(flatten)]
    pub kind: NodeKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NodeKind {
    /// The run's inputs, as a JSON object.
    Input,
    /// A chat completion through the gateway (limits, budgets, failover, cache).
    Llm {
        model: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        system: Option<String>,
        prompt: String,
        #[serde(default, skip_serializing_if = "Map::is_empty")]
        params: Map<String, Value>,
    },
    Template {
        template: String,
    },
    /// `true` or `false`; edges out of it carry `when:` to take one branch.
    Condition {
        value: String,
        op: ConditionOp,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        text: String,
    },
    /// A request to an allow-listed host; its output is the response body.
    Http {
        url: String,
        #[serde(default = "post")]
        method: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
    },
    /// The outputs of the nodes before it that ran, one per line.
    Merge,
    Output {
        value: String,
    },
}

fn post() -> String {
    "POST".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConditionOp {
    Contains,
    Equals,
    NotEmpty,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    pub from: String,
    pub to: String,
    /// For edges out of a condition: the branch they belong to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<bool>,
}

impl NodeKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            NodeKind::Input => "input",
            NodeKind::Llm { .. } => "llm",
            NodeKind::Template { .. } => "template",
            NodeKind::Condition { .. } => "condition",
            NodeKind::Http { .. } => "http",
            NodeKind::Merge => "merge",
            NodeKind::Output { .. } => "output",
        }
    }

    /// The templates of the node, whose `{{refs}}` must resolve.
    fn templates(&self) -> Vec<&str> {
        match self {
            NodeKind::Input | NodeKind::Merge => vec![],
            NodeKind::Llm { system, prompt, .. } => {
                let mut t = vec![prompt.as_str()];
                t.extend(system.as_deref());
                t
            }
            NodeKind::Template { template } => vec![template],
            NodeKind::Condition { value, .. } => vec![value],
            NodeKind::Http { url, body, .. } => {
                let mut t = vec![url.as_str()];
                t.extend(body.as_deref());
                t
            }
            NodeKind::Output { value } => vec![value],
        }
    }
}

/// What validation needs from the gateway's config.
pub struct Checks<'a> {
    pub model_exists: &'a dyn Fn(&str) -> bool,
    /// `host` or `host:port` an http node may call.
    pub http_allowed: &'a dyn Fn(&str) -> bool,
}

impl Workflow {
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The nodes in an order where every edge points forward; None when there is a cycle.
    pub fn order(&self) -> Option<Vec<usize>> {
        let index: HashMap<&str, usize> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.as_str(), i))
            .collect();
        let mut incoming = vec![0usize; self.nodes.len()];
        for e in &self.edges {
            incoming[*index.get(e.to.as_str())?] += 1;
        }
        let mut ready: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| incoming[i] == 0)
            .collect();
        ready.reverse();
        let mut order = Vec::with_capacity(self.nodes.len());
        while let Some(i) = ready.pop() {
            order.push(i);
            for e in self.edges.iter().filter(|e| e.from == self.nodes[i].id) {
                let j = index[e.to.as_str()];
                incoming[j] -= 1;
                if incoming[j] == 0 {
                    ready.insert(0, j);
                }
            }
        }
        (order.len() == self.nodes.len()).then_some(order)
    }

    /// The nodes an edge path leads from to `id`.
    pub fn ancestors(&self, id: &str) -> Vec<&str> {
        let mut found: Vec<&str> = Vec::new();
        let mut todo = vec![id];
        while let Some(n) = todo.pop() {
            for e in self.edges.iter().filter(|e| e.to == n) {
                if !found.contains(&e.from.as_str()) {
                    found.push(&e.from);
                    todo.push(&e.from);
                }
            }
        }
        found
    }

    /// Every problem, each with the field it is about.
    pub fn problems(&self, checks: &Checks) -> Vec<(String, String)> {
        let mut p: Vec<(String, String)> = Vec::new();
        if !super::apps::valid_name(&self.name) {
            p.push(("name".into(), "use letters, digits, `-` and `_`".into()));
        }
        if self.nodes.is_empty() || self.nodes.len() > MAX_NODES {
            p.push((
                "nodes".into(),
                format!("a workflow has 1 to {MAX_NODES} nodes"),
            ));
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if !super::apps::valid_name(&n.id) {
                p.push((
                    format!("nodes[{i}].id"),
                    "use letters, digits, `-` and `_`".into(),
                ));
            }
            if n.id == "inputs" || self.nodes[..i].iter().any(|o| o.id == n.id) {
                p.push((format!("nodes[{i}].id"), format!("`{}` is taken", n.id)));
            }
        }
        for (i, e) in self.edges.iter().enumerate() {
            for end in [&e.from, &e.to] {
                if self.node(end).is_none() {
                    p.push((format!("edges[{i}]"), format!("no node `{end}`")));
                }
            }
            let from_condition = matches!(
                self.node(&e.from).map(|n| &n.kind),
                Some(NodeKind::Condition { .. })
            );
            if e.when.is_some() != from_condition {
                p.push((
                    format!("edges[{i}].when"),
                    "`when:` goes on the edges out of a condition node, and only there".into(),
                ));
            }
            if e.from == e.to {
                p.push((format!("edges[{i}]"), "a node cannot lead to itself".into()));
            }
        }
        if !p.is_empty() {
            return p;
        }
        if self.order().is_none() {
            p.push(("edges".into(), "the edges make a cycle".into()));
            return p;
        }
        for (i, n) in self.nodes.iter().enumerate() {
            let ancestors = self.ancestors(&n.id);
            for t in n.kind.templates() {
                for r in template::variables(t) {
                    if let Some(problem) = self.reference_problem(&r, &ancestors) {
                        p.push((format!("nodes[{i}]"), problem));
                    }
                }
            }
            match &n.kind {
                NodeKind::Llm { model, .. } if !(checks.model_exists)(model) => {
                    p.push((
                        format!("nodes[{i}].model"),
                        format!("no model named `{model}`"),
                    ));
                }
                NodeKind::Http { url, method, .. } => {
                    let host = url
                        .split_once("://")
                        .map(|(_, rest)| rest.split('/').next().unwrap_or(""))
                        .unwrap_or("");
                    if !url.starts_with("http://") && !url.starts_with("https://") {
                        p.push((format!("nodes[{i}].url"), "an http or https URL".into()));
                    } else if host.contains("{{") || !(checks.http_allowed)(host) {
                        p.push((
                            format!("nodes[{i}].url"),
                            format!("`{host}` is not in workflows.http_allow"),
                        ));
                    }
                    if !matches!(method.as_str(), "GET" | "POST") {
                        p.push((format!("nodes[{i}].method"), "GET or POST".into()));
                    }
                }
                _ => {}
            }
        }
        for id in self.layout.keys() {
            if self.node(id).is_none() {
                p.push((format!("layout.{id}"), format!("no node `{id}`")));
            }
        }
        p
    }

    /// A `{{ref}}` that cannot resolve: an undeclared input, or a node that does not run
    /// before this one.
    fn reference_problem(&self, r: &str, ancestors: &[&str]) -> Option<String> {
        match r.split_once('.') {
            Some(("inputs", name)) if self.inputs.contains_key(name) => None,
            Some(("inputs", name)) => Some(format!("`{{{{{r}}}}}`: no input named `{name}`")),
            Some((node, "output")) if ancestors.contains(&node) => None,
            Some((node, "output")) if self.node(node).is_some() => Some(format!(
                "`{{{{{r}}}}}`: `{node}` does not run before this node (add an edge)"
            )),
            _ => Some(format!(
                "`{{{{{r}}}}}`: use {{{{inputs.NAME}}}} or {{{{NODE.output}}}}"
            )),
        }
    }

    /// The run's inputs checked against their declared types, as text for templates.
    pub fn typed_inputs(
        &self,
        given: &Map<String, Value>,
    ) -> Result<HashMap<String, String>, String> {
        let mut out = HashMap::new();
        for (name, ty) in &self.inputs {
            let v = given
                .get(name)
                .ok_or_else(|| format!("missing input `{name}`"))?;
            let text = match (ty, v) {
                (InputType::String, Value::String(s)) => s.clone(),
                (InputType::Number, Value::Number(n)) => n.to_string(),
                (InputType::Boolean, Value::Bool(b)) => b.to_string(),
                _ => {
                    return Err(format!(
                        "input `{name}` must be a {}",
                        format!("{ty:?}").to_lowercase()
                    ))
                }
            };
            out.insert(format!("inputs.{name}"), text);
        }
        if let Some(extra) = given.keys().find(|k| !self.inputs.contains_key(*k)) {
            return Err(format!("unknown input `{extra}`"));
        }
        Ok(out)
    }

    /// The nodes whose outputs are the run's: its output nodes, or else the nodes nothing
    /// follows.
    pub fn result_nodes(&self) -> Vec<&str> {
        let outputs: Vec<&str> = self
            .nodes
            .iter()
            .filter(|n| matches!(n.kind, NodeKind::Output { .. }))
            .map(|n| n.id.as_str())
            .collect();
        if !outputs.is_empty() {
            return outputs;
        }
        self.nodes
            .iter()
            .filter(|n| !self.edges.iter().any(|e| e.from == n.id))
            .map(|n| n.id.as_str())
            .collect()
    }
}

/// Whether a condition holds for its rendered value.
pub fn condition_holds(op: ConditionOp, value: &str, text: &str) -> bool {
    match op {
        ConditionOp::Contains => value.contains(text),
        ConditionOp::Equals => value.trim() == text.trim(),
        ConditionOp::NotEmpty => !value.trim().is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REVIEW: &str = r#"
name: review
inputs: {text: string}
nodes:
  - {id: ask, type: template, template: "Review: {{inputs.text}}"}
  - {id: check, type: condition, value: "{{inputs.text}}", op: contains, text: urgent}
  - {id: fast, type: llm, model: m, prompt: "{{ask.output}}"}
  - {id: slow, type: template, template: "later: {{ask.output}}"}
  - {id: out, type: merge}
edges:
  - {from: ask, to: check}
  - {from: check, to: fast, when: true}
  - {from: check, to: slow, when: false}
  - {from: fast, to: out}
  - {from: slow, to: out}
layout:
  ask: {x: 10, y: 20}
"#;

    fn checks() -> Checks<'static> {
        Checks {
            model_exists: &|m| m == "m",
            http_allowed: &|h| h == "127.0.0.1:9",
        }
    }

    #[test]
    fn a_valid_graph_orders_its_nodes_and_round_trips_through_yaml() {
        let w: Workflow = serde_yaml_ng::from_str(REVIEW).unwrap();
        assert!(
            w.problems(&checks()).is_empty(),
            "{:?}",
            w.problems(&checks())
        );
        let order: Vec<&str> = w
            .order()
            .unwrap()
            .iter()
            .map(|&i| w.nodes[i].id.as_str())
            .collect();
        assert_eq!(order[..2], ["ask", "check"]);
        assert_eq!(order.last(), Some(&"out"));
        let again: Workflow =
            serde_yaml_ng::from_str(&serde_yaml_ng::to_string(&w).unwrap()).unwrap();
        assert_eq!(again, w);
        assert_eq!(w.result_nodes(), ["out"]);
    }

    #[test]
    fn cycles_unknown_references_models_and_hosts_are_problems() {
        let mut w: Workflow = serde_yaml_ng::from_str(REVIEW).unwrap();
        w.edges.push(Edge {
            from: "out".into(),
            to: "ask".into(),
            when: None,
        });
        assert_eq!(w.problems(&checks())[0].1, "the edges make a cycle");
        let mut w: Workflow = serde_yaml_ng::from_str(REVIEW).unwrap();
        w.nodes[3].kind = NodeKind::Template {
            template: "{{fast.output}} {{inputs.nope}}".into(),
        };
        let p = w.problems(&checks());
        assert!(
            p.iter().any(|(_, m)| m.contains("does not run before")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|(_, m)| m.contains("no input named `nope`")),
            "{p:?}"
        );
        w.nodes[2].kind = NodeKind::Http {
            url: "http://evil.example/x".into(),
            method: "GET".into(),
            body: None,
        };
        assert!(w
            .problems(&checks())
            .iter()
            .any(|(f, _)| f == "nodes[2].url"));
    }

    #[test]
    fn inputs_are_typed() {
        let w: Workflow = serde_yaml_ng::from_str(REVIEW).unwrap();
        let ok: Map<String, Value> = serde_json::from_str(r#"{"text": "hi"}"#).unwrap();
        assert_eq!(w.typed_inputs(&ok).unwrap()["inputs.text"], "hi");
        let bad: Map<String, Value> = serde_json::from_str(r#"{"text": 5}"#).unwrap();
        assert!(w.typed_inputs(&bad).is_err());
        assert!(w.typed_inputs(&Map::new()).is_err());
    }
}
