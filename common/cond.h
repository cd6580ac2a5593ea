/*  cond.h — conditions on engines: a service's `--require` expression,
    parsed once and evaluated against an engine's properties.

    The language (docs/services.md, "Conditions on engines"):

        condition  := or
        or         := and { "||" and }
        and        := unary { "&&" unary }
        unary      := "!" unary | "(" condition ")" | comparison
        comparison := operand op operand
        op         := "==" | "!=" | "<" | "<=" | ">" | ">="
        operand    := NAME | STRING | NUMBER
        NAME       := [A-Za-z_][A-Za-z0-9_]*          a property of the engine
        STRING     := '"' { any byte but '"' and '\', or '\"' or '\\' } '"'
        NUMBER     := ["-"] digits ["." digits] [("e"|"E") ["+"|"-"] digits]

    `!` binds tightest, then `&&`, then `||`; spaces and tabs separate
    tokens anywhere. Semantics:
    - a comparison naming a property the engine does not have is false,
      whatever its operator (`gpu != "a100"` is false on an engine without
      gpu; `!(gpu == "a100")` is true there);
    - when both sides read as numbers (NUMBER above, property values too)
      they compare as numbers (`"4096" == 4096.0` is true), otherwise as
      byte strings (strcmp order; `"10" < "9"` is false, both are numbers).

    Bounds: at most KEEL_COND_MAX_LEN bytes of text, KEEL_COND_MAX_DEPTH
    nested `(` or `!`, names of at most KEEL_COND_NAME_MAX bytes. A parse
    error says where, 1-based: "column 17: expected a value after '>='".

    A keel_cond_t owns a copy of its text and a compact postfix program;
    evaluating it allocates nothing. It is immutable once parsed, so it can
    be shared. Free it with keel_cond_destroy.
*/
#ifndef KEEL_COND_H
#define KEEL_COND_H

#include <stdbool.h>
#include <stddef.h>
#include "error.h"

#define KEEL_COND_MAX_LEN   1024 // bytes of condition text
#define KEEL_COND_MAX_DEPTH 64   // nested '(' and '!'
#define KEEL_COND_NAME_MAX  64   // bytes of a property name (engine keys too)
#define KEEL_COND_VALUE_MAX 256  // bytes of a property's value (engines send no longer)

typedef struct _keel_cond_t keel_cond_t;

// Parses text. Returns NULL and fills err ("column N: what was expected")
// when text is malformed or too long/deep; KEEL_ERR_INVALID is the code.
keel_cond_t *keel_cond_parse (const char *text, keel_error_t *err);

// Frees the condition and nulls *self_p. Idempotent.
void keel_cond_destroy (keel_cond_t **self_p);

// The text it was parsed from.
const char *keel_cond_text (const keel_cond_t *self);

// Returns the value of property name, or NULL when the engine has none.
typedef const char *(keel_cond_lookup_fn) (const char *name, void *arg);

// Evaluates the condition with lookup. When it is false and why is not
// NULL, fills why (at most why_size bytes, always terminated) with the
// comparison that decided it and the values it saw, e.g.
// "memory_mb >= 4096 is false (memory_mb = 2048)" or
// "gpu == \"a100\" is false (gpu is not set)".
bool keel_cond_eval (const keel_cond_t *self, keel_cond_lookup_fn *lookup, void *arg, char *why,
                     size_t why_size);

// True when name is a valid property name (NAME above, at most
// KEEL_COND_NAME_MAX bytes): what engines may advertise.
bool keel_cond_name_ok (const char *name);

#endif
