"""Query templates by category: what `data generate` asks an LLM to expand.

Queries come from templates (so the set covers what QMD users search for, not what an LLM
likes to invent), each category filled with every combination of its slots and visited in a
seeded order, categories taking turns.
"""

from __future__ import annotations

import itertools
import random
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from qmd_ft.errors import UserError


@dataclass(frozen=True)
class Category:
    """Query templates: each pattern is filled with every combination of its slots' values."""

    patterns: tuple[str, ...]
    slots: Mapping[str, tuple[str, ...]]

    def queries(self) -> list[str]:
        """Every query the templates make, in a fixed order."""
        out = []
        for pattern in self.patterns:
            names = [name for _, name, _, _ in string.Formatter().parse(pattern) if name]
            for values in itertools.product(*(self.slots[n] for n in names)):
                out.append(pattern.format(**dict(zip(names, values, strict=True))))
        return out


CATEGORIES: dict[str, Category] = {
    "technical": Category(
        ("{tool} {topic}", "how to configure {topic} in {tool}", "{tool} {topic} example"),
        {
            "tool": ("docker", "kubernetes", "nginx", "postgres", "redis", "django", "rails",
                     "react", "node.js", "terraform", "fastapi", "github actions"),
            "topic": ("environment variables", "logging", "authentication", "caching",
                      "health checks", "config file", "connection pooling", "rate limiting",
                      "secrets", "timeouts"),
        },
    ),
    "notes": Category(
        ("{meeting} notes {subject}", "ideas for {subject}", "todo {subject}",
         "{period} journal {theme}"),
        {
            "meeting": ("meeting", "standup", "1:1", "retro", "planning", "interview"),
            "subject": ("project kickoff", "q3 roadmap", "hiring plan", "website redesign",
                        "onboarding", "budget review", "launch checklist", "team offsite"),
            "period": ("morning", "weekly", "monthly", "travel"),
            "theme": ("reflections", "gratitude", "goals", "habits", "stress"),
        },
    ),
    "research": Category(
        ("what is {concept}", "{concept} explained", "how does {concept} work",
         "difference between {pair}", "history of {topic}"),
        {
            "concept": ("dependency injection", "eventual consistency", "photosynthesis",
                        "inflation", "CRISPR", "quantum entanglement", "game theory",
                        "the placebo effect", "compound interest", "plate tectonics"),
            "pair": ("sql and nosql", "tcp and udp", "stocks and bonds", "weather and climate",
                     "viruses and bacteria", "processes and threads", "mitosis and meiosis",
                     "REST and GraphQL"),
            "topic": ("the printing press", "the internet", "vaccines", "the stock market",
                      "jazz", "cartography"),
        },
    ),
    "errors": Category(
        ("{tool} {error}", "{error} fix", "how to debug {error} in {tool}"),
        {
            "tool": ("python", "node.js", "docker", "postgres", "nginx", "java", "kubernetes",
                     "git"),
            "error": ("connection refused", "permission denied", "out of memory",
                      "segmentation fault", "timeout error", "module not found",
                      "certificate verify failed", "deadlock detected", "too many open files",
                      "port already in use"),
        },
    ),
    "temporal": Category(
        ("latest {subject} news", "recent {subject} changes", "what changed in {product} {when}",
         "best {item} right now"),
        {
            "subject": ("AI", "kubernetes", "python", "climate policy", "electric cars",
                        "web browsers", "smartphones"),
            "product": ("kubernetes", "python", "react", "postgres", "iOS", "typescript"),
            "when": ("this year", "latest version", "last release"),
            "item": ("laptops", "budget phones", "noise cancelling headphones",
                     "mechanical keyboards", "password managers", "note taking apps"),
        },
    ),
    "entities": Category(
        ("{entity} {aspect}", "who is {person}", "{person} {work}"),
        {
            "entity": ("Stripe", "AWS Lambda", "Shopify", "GitHub Actions", "Tesla Model Y",
                       "Notion", "Figma", "Cloudflare Workers", "PostgreSQL", "Vercel"),
            "aspect": ("pricing", "API limits", "alternatives", "setup guide", "review",
                       "outage history"),
            "person": ("Ada Lovelace", "Alan Turing", "Grace Hopper", "Linus Torvalds",
                       "Marie Curie", "Satya Nadella"),
            "work": ("biography", "famous quotes", "key contributions"),
        },
    ),
    "short": Category(
        ("{word}", "{word} {qualifier}"),
        {
            "word": ("auth", "config", "setup", "api", "cache", "logs", "deploy", "backup",
                     "sso", "cron", "dns", "ssl", "oauth", "cors", "vpn", "webhook"),
            "qualifier": ("docs", "error", "guide", "settings", "example"),
        },
    ),
    "multilingual": Category(
        ("wie funktioniert {de}", "comment configurer {fr}", "cómo instalar {es}", "{ja}の使い方"),
        {
            "de": ("eine Wärmepumpe", "Docker Compose", "die Steuererklärung", "ein VPN",
                   "Photovoltaik", "eine Hypothek", "Git Rebase", "die Rentenversicherung"),
            "fr": ("un serveur nginx", "la sauvegarde automatique", "un routeur wifi", "git",
                   "une imprimante réseau", "un VPN", "PostgreSQL", "le pare-feu Windows"),
            "es": ("Python en Windows", "Docker en Ubuntu", "un certificado SSL", "Node.js",
                   "Postgres", "WordPress", "un servidor VPN", "Git en Mac"),
            "ja": ("Docker", "Git", "Excel", "Python", "Notion", "Slack", "VSCode", "Figma"),
        },
    ),
}  # fmt: skip


def check_categories(categories: list[str]) -> None:
    """Raise UserError naming any category that has no templates."""
    unknown = [c for c in categories if c not in CATEGORIES]
    if unknown:
        raise UserError(f"--category: {', '.join(unknown)} not one of {', '.join(CATEGORIES)}")


def candidate_queries(categories: list[str], seed: int) -> Iterator[str]:
    """Template queries, taking turns across categories, each category in a seeded order."""
    rng = random.Random(seed)
    pools = []
    for name in categories:
        queries = CATEGORIES[name].queries()
        rng.shuffle(queries)
        pools.append(iter(queries))
    while pools:
        for queries in list(pools):
            query = next(queries, None)
            if query is None:
                pools.remove(queries)
            else:
                yield query
