//! Prompt-injection and jailbreak heuristics. Known phrasing families ("ignore previous
//! instructions", "you are now DAN", "reveal your system prompt", chat-template
//! delimiters) each carry a weight; a text's score is the noisy-OR of the strongest
//! phrase of each family it contains, so one clear phrase or two weak ones cross the
//! threshold. This is a signal with a score, not a promise: paraphrase beats it, and a
//! text that merely quotes an attack scores like the attack.
//!
//! Ambiguous phrasings ("enable developer mode", "jailbreak", "from now on you will")
//! weigh less than the threshold so that, alone, they do not fire on ordinary questions.

/// One phrasing of a family. Patterns run ASCII-only and case-insensitive
/// (`(?i-u)`), which keeps them on the regex engine's DFA for any input.
#[derive(Debug, Clone, Copy)]
pub struct InjectionPhrase {
    pub family: &'static str,
    pub weight: f32,
    pub regex: &'static str,
    /// Literals one of which every match starts with (ASCII case ignored): the phrase
    /// is only tried where one occurs.
    pub anchors: &'static [&'static str],
}

/// The id under which every injection phrase reports.
pub const INJECTION_RULE_ID: &str = "prompt_injection";

/// Default score at which the injection detector fires.
pub const DEFAULT_THRESHOLD: f32 = 0.5;

pub const PHRASES: &[InjectionPhrase] = &[
    InjectionPhrase {
        family: "ignore_instructions",
        weight: 0.85,
        regex: concat!(
            r"(?i-u)\b(?:ignore|disregard|forget|override|bypass)\s+(?:(?:all|any|every|the|of|these|those|my)\s+){0,3}",
            r"(?:your\s+|(?:previous|prior|above|earlier|preceding|former|original|initial|system|safety|existing|developer|openai|anthropic)\s+)+",
            r"(?:(?:and|or)\s+[a-z]+\s+)?(?:instructions?|prompts?|rules|directives?|guidelines|commands|constraints|restrictions|programming)\b"
        ),
        anchors: &["ignore", "disregard", "forget", "override", "bypass"],
    },
    InjectionPhrase {
        family: "ignore_instructions",
        weight: 0.75,
        regex: r"(?i-u)\b(?:ignore|disregard|forget)\s+(?:all|everything)\s+(?:of\s+)?(?:the\s+)?(?:instructions?|rules|guidelines|prompts?|you\s+were\s+told|above)\b",
        anchors: &["ignore", "disregard", "forget"],
    },
    InjectionPhrase {
        family: "persona_override",
        weight: 0.8,
        regex: r"(?i-u)\byou\s+are\s+now\s+(?:(?-i:DAN|STAN|DUDE|AIM)\b|(?:in\s+)?(?:developer|god|jailbreak|(?-i:DAN)|unrestricted)\s+mode\b|an?\s+(?:unrestricted|unfiltered|uncensored|jailbroken|evil)\b|free\s+(?:of|from)\b|no\s+longer\s+(?:an?\s+)?(?:ai|assistant|bound|restricted)\b)",
        anchors: &["you"],
    },
    InjectionPhrase {
        family: "persona_override",
        weight: 0.8,
        regex: r"(?i-u)\b(?:do\s+anything\s+now|(?:act|pretend|behave)\s+as\s+(?:(?-i:DAN)\b|an?\s+(?:unrestricted|unfiltered|uncensored|jailbroken)\s+(?:ai|assistant|model|chatbot|version)))",
        anchors: &["do", "act", "pretend", "behave"],
    },
    InjectionPhrase {
        family: "developer_mode",
        weight: 0.75,
        regex: r"(?i-u)\b(?:(?:simulate|emulate)\s+(?:the\s+)?|pretend\s+(?:to\s+be|you\s+are)\s+in\s+|act\s+as\s+if\s+you\s+(?:are|were)\s+in\s+)(?:developer|god|jailbreak|unrestricted|(?-i:DAN))\s+mode\b|\b(?:developer|jailbreak|(?-i:DAN))\s+mode\s+(?:output|response)s?\b",
        anchors: &[
            "simulate",
            "emulate",
            "pretend",
            "act",
            "developer",
            "jailbreak",
            "dan",
        ],
    },
    InjectionPhrase {
        family: "developer_mode",
        weight: 0.45,
        regex: r"(?i-u)\b(?:enable|enter|activate|switch\s+(?:to|into)|turn\s+on|unlock)\s+(?:the\s+)?(?:developer|dev|god|sudo|jailbreak|unrestricted|evil)\s+mode\b",
        anchors: &["enable", "enter", "activate", "switch", "turn", "unlock"],
    },
    InjectionPhrase {
        family: "no_restrictions",
        weight: 0.75,
        regex: r"(?i-u)\b(?:pretend|imagine|act\s+as\s+if|behave\s+as\s+if|assume)\s+(?:that\s+)?you\s+(?:are|have|were|had)\s+(?:an?\s+[a-z]+\s+)?(?:with\s+)?(?:no|zero|without(?:\s+any)?)\s+(?:[a-z]+\s+)?(?:restrictions|limits|limitations|filters|guidelines|rules|boundaries|censorship|morals|ethics)\b",
        anchors: &["pretend", "imagine", "act", "behave", "assume"],
    },
    InjectionPhrase {
        family: "no_restrictions",
        weight: 0.7,
        regex: r"(?i-u)\byou\s+(?:now\s+)?(?:have|has)\s+no\s+(?:[a-z]+\s+)?(?:restrictions|limits|limitations|filters|guidelines|censorship|content\s+polic(?:y|ies)|morals|ethics)\b",
        anchors: &["you"],
    },
    InjectionPhrase {
        family: "prompt_exfiltration",
        weight: 0.75,
        regex: r"(?i-u)\b(?:reveal|show|print|repeat|output|display|dump|leak|expose|recite|give|tell|write\s+out|spell\s+out)\s+(?:me\s+)?(?:back\s+)?your\s+(?:(?:full|entire|complete|original|hidden|secret|initial|exact|verbatim|system|developer)\s+)*(?:system\s+prompt|system\s+message|prompt|instructions|initial\s+instructions|developer\s+message|pre-?prompt|rules)\b",
        anchors: &[
            "reveal", "show", "print", "repeat", "output", "display", "dump", "leak", "expose",
            "recite", "give", "tell", "write", "spell",
        ],
    },
    InjectionPhrase {
        family: "prompt_exfiltration",
        weight: 0.6,
        regex: r"(?i-u)\b(?:what\s+(?:is|are|was|were)\s+your\s+(?:(?:full|exact|original|initial|hidden|secret)\s+)*(?:system\s+prompt|system\s+message|initial\s+instructions|hidden\s+instructions)|(?:repeat|print|output|echo)\s+(?:all\s+|everything\s+|the\s+)?(?:(?:text|words|content)\s+)?(?:above\s+this\s+line|before\s+this\s+(?:message|line))|(?:repeat|print|output|echo)\s+(?:all\s+|everything\s+|the\s+)?(?:text|words|content|everything)\s+above\b|(?:beginning|starting)\s+with\s+[\x22\x27]?you\s+are\b)",
        anchors: &[
            "what",
            "repeat",
            "print",
            "output",
            "echo",
            "beginning",
            "starting",
        ],
    },
    InjectionPhrase {
        family: "prompt_exfiltration",
        weight: 0.35,
        regex: r"(?i-u)\b(?:reveal|print|repeat|output|dump|leak|recite)\s+(?:me\s+)?the\s+(?:(?:full|entire|complete|original|hidden|secret|exact|verbatim)\s+)*(?:system\s+prompt|hidden\s+instructions|initial\s+instructions)\b",
        anchors: &[
            "reveal", "print", "repeat", "output", "dump", "leak", "recite",
        ],
    },
    InjectionPhrase {
        family: "delimiter_injection",
        weight: 0.6,
        regex: r"(?i-u)<\|(?:im_start|im_end|system|endoftext|start_header_id|end_header_id|eot_id)\|>|\[/?(?-i:INST|SYS)\]|<<(?-i:SYS)>>|#{2,}\s*(?:system|new\s+instructions?)\s*(?:prompt\s*)?:",
        anchors: &[
            "<|", "[inst]", "[/inst]", "[sys]", "[/sys]", "<<sys>>", "##",
        ],
    },
    InjectionPhrase {
        family: "delimiter_injection",
        weight: 0.45,
        regex: r"(?i-u)\b(?:new|updated|revised|real|actual|true|secret|hidden)\s+(?:system\s+)?instructions?\s*:",
        anchors: &[
            "new", "updated", "revised", "real", "actual", "true", "secret", "hidden",
        ],
    },
    InjectionPhrase {
        family: "safety_bypass",
        weight: 0.8,
        regex: r"(?i-u)\b(?:bypass|disable|turn\s+off|ignore|override|deactivate|remove|circumvent|forget)\s+(?:all\s+|any\s+|of\s+)*your\s+(?:[a-z]+\s+)?(?:safety|content|ethical|moral)\s+(?:filters?|guidelines|protocols|restrictions|policies|rules|guardrails|training|programming|constraints)\b",
        anchors: &[
            "bypass",
            "disable",
            "turn",
            "ignore",
            "override",
            "deactivate",
            "remove",
            "circumvent",
            "forget",
        ],
    },
    InjectionPhrase {
        family: "safety_bypass",
        weight: 0.4,
        regex: r"(?i-u)\b(?:bypass|circumvent|evade|get\s+around)\s+(?:the\s+|any\s+|all\s+)?(?:safety|content|ethical|moral)\s+(?:filters?|guidelines|restrictions|policies|guardrails)\b",
        anchors: &["bypass", "circumvent", "evade", "get"],
    },
    InjectionPhrase {
        family: "jailbreak_term",
        weight: 0.3,
        regex: r"(?i-u)\bjailbr(?:eak|oken|eaking)\b",
        anchors: &["jailbr"],
    },
    InjectionPhrase {
        family: "obedience",
        weight: 0.45,
        regex: r"(?i-u)\byou\s+(?:must|will|shall)\s+(?:always\s+)?(?:comply|obey)\b|\b(?:stay|remain)\s+in\s+character\b|\bnever\s+refuse\b|\bwithout\s+(?:any\s+)?(?:warnings?|disclaimers?)\s+or\s+(?:refusals?|censorship)\b",
        anchors: &["you", "stay", "remain", "never", "without"],
    },
    InjectionPhrase {
        family: "encoded_payload",
        weight: 0.35,
        regex: r"(?i-u)\b(?:decode|base64-decode|rot13|reverse)\b[\x20-\x2D\x2F-\x7E]{0,60}?\b(?:and|then)\s+(?:follow|execute|obey|run|do)\b",
        anchors: &["decode", "base64-decode", "rot13", "reverse"],
    },
];

/// Noisy-OR of the strongest weight seen per family: `1 − Π(1 − wᵢ)`.
pub fn score(family_weights: impl IntoIterator<Item = (&'static str, f32)>) -> f32 {
    let mut best: Vec<(&'static str, f32)> = Vec::new();
    for (family, w) in family_weights {
        match best.iter_mut().find(|(f, _)| *f == family) {
            Some(entry) => entry.1 = entry.1.max(w),
            None => best.push((family, w)),
        }
    }
    1.0 - best
        .iter()
        .map(|(_, w)| 1.0 - w.clamp(0.0, 1.0))
        .product::<f32>()
}
