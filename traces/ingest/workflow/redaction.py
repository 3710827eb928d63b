"""What workflow redacts before it stores step output, applied to what we take from events.db."""

from __future__ import annotations

from typing import Any

# Mirrors module/step_output_redactor.go (at the commit FORMATS.md §4 cites):
# workflow.db holds step output redacted, events.db does not; what we add from
# events.db must not show more than workflow.db.
_SENSITIVE = (
    *("secret", "password", "token", "credential", "authorization", "cookie", "signature"),
    *("request_body", "raw_body", "artifact_content", "content_b64", "transmission_sig"),
    *("api_key", "api-key", "apikey", "private_key", "access_key", "backup_code"),
    *("totp_secret", "mfa_secret"),
)
REDACTED = "[REDACTED]"


def redact(value: Any) -> Any:
    """A copy of `value` with the values under secret-like keys replaced, at any
    depth (without recursion: event data can be nested a thousand levels)."""
    if not isinstance(value, dict | list):
        return value
    root: Any = {} if isinstance(value, dict) else []
    stack = [(value, root)]
    while stack:
        source, target = stack.pop()
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, item in items:
            if isinstance(source, dict) and isinstance(key, str) and _sensitive(key):
                copied: Any = REDACTED
            elif isinstance(item, dict | list):
                copied = {} if isinstance(item, dict) else []
                stack.append((item, copied))
            else:
                copied = item
            if isinstance(target, dict):
                target[key] = copied
            else:
                target.append(copied)
    return root


def _sensitive(name: str) -> bool:
    lower = name.lower()
    if lower.endswith("_display"):
        return False
    matched = [pattern for pattern in _SENSITIVE if pattern in lower]
    if not matched:
        return False
    return not (lower.endswith("_ref") and all(m == "credential" for m in matched))
