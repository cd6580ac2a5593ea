/*  cond.c — the condition language of cond.h: a recursive-descent parser
    (its depth bounded by KEEL_COND_MAX_DEPTH) that emits a postfix program,
    and a stack machine that runs it.
*/
#include "cond.h"

#include <ctype.h>
#include <stdarg.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { S_CMP, S_AND, S_OR, S_NOT } s_kind_t;
typedef enum { S_EQ, S_NE, S_LT, S_LE, S_GT, S_GE } s_op_t;

static const char *s_op_text[] = { "==", "!=", "<", "<=", ">", ">=" };

typedef struct {
    bool prop;    // a property name (else a literal)
    bool is_num;  // a literal that reads as a number
    double num;   // its value
    uint16_t off; // text (name, or the literal's bytes) in the pool
    uint16_t len; // its length
} s_operand_t;

typedef struct {
    uint8_t kind;
    uint8_t op;
    uint16_t col; // a comparison's source text: column (0-based) and length
    uint16_t span;
    s_operand_t lhs, rhs;
} s_node_t;

// Every node takes at least one byte of text ('!'; a comparison three,
// "a<b"): at most one node per byte, and at most one comparison per three
// bytes waits on the evaluation stack.
#define S_MAX_STACK (KEEL_COND_MAX_LEN / 3 + 2)

struct _keel_cond_t {
    char *text;
    char *pool; // names and literals, each NUL-terminated
    s_node_t *nodes;
    size_t nnodes, cap;
};

// ---------------------------------------------------------------- tokens

typedef enum {
    T_END,
    T_NAME,
    T_STRING,
    T_NUMBER,
    T_OP,
    T_AND,
    T_OR,
    T_NOT,
    T_LP,
    T_RP,
    T_ERROR
} s_tok_t;

typedef struct {
    const char *s;
    size_t len;
    size_t pos; // next byte to read
    keel_cond_t *cond;
    size_t pool_used;
    keel_error_t *err;
    // The current token.
    s_tok_t tok;
    size_t col, tok_len; // 0-based start and length in s
    s_op_t op;
    s_operand_t operand; // T_NAME, T_STRING, T_NUMBER
} s_parser_t;

static bool s_fail (s_parser_t *p, size_t col, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

static bool
s_fail (s_parser_t *p, size_t col, const char *fmt, ...)
{
    char what[200];
    va_list args;
    va_start (args, fmt);
    vsnprintf (what, sizeof what, fmt, args);
    va_end (args);
    keel_error_set (p->err, KEEL_ERR_INVALID, "column %zu: %s", col + 1, what);
    p->tok = T_ERROR;
    return false;
}

// Reads a number at s (NUMBER of cond.h); returns its length, 0 if none.
static size_t
s_number_len (const char *s, size_t n)
{
    size_t i = 0;
    if (i < n && s[i] == '-')
        i++;
    size_t digits = i;
    while (i < n && isdigit ((unsigned char) s[i]))
        i++;
    if (i == digits)
        return 0;
    if (i < n && s[i] == '.') {
        size_t frac = ++i;
        while (i < n && isdigit ((unsigned char) s[i]))
            i++;
        if (i == frac)
            return 0;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t e = i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t exp = i;
        while (i < n && isdigit ((unsigned char) s[i]))
            i++;
        if (i == exp)
            i = e; // "12e": the number is "12"; the caller refuses what follows
    }
    return i;
}

// True when the whole of s (n bytes) is a NUMBER; *value gets it.
static bool
s_as_number (const char *s, size_t n, double *value)
{
    if (n == 0 || n > 64 || s_number_len (s, n) != n)
        return false;
    char buf[65];
    memcpy (buf, s, n);
    buf[n] = 0;
    *value = strtod (buf, NULL);
    return isfinite (*value);
}

static bool
s_name_char (char c, bool first)
{
    return isalpha ((unsigned char) c) || c == '_' || (!first && isdigit ((unsigned char) c));
}

// Appends n bytes to the pool; returns their offset.
static uint16_t
s_pool_add (s_parser_t *p, const char *bytes, size_t n)
{
    size_t off = p->pool_used;
    memcpy (p->cond->pool + off, bytes, n);
    p->cond->pool[off + n] = 0;
    p->pool_used += n + 1;
    return (uint16_t) off;
}

static bool
s_string (s_parser_t *p)
{
    size_t start = p->pos++;
    char *out = p->cond->pool + p->pool_used;
    size_t n = 0;
    while (p->pos < p->len && p->s[p->pos] != '"') {
        char c = p->s[p->pos];
        if (c == '\\') {
            char e = p->pos + 1 < p->len ? p->s[p->pos + 1] : 0;
            if (e != '"' && e != '\\')
                return e ? s_fail (p, p->pos, "unknown escape '\\%c' (only \\\" and \\\\)",
                                   isprint ((unsigned char) e) ? e : '?')
                         : s_fail (p, start, "unterminated string");
            c = e;
            p->pos++;
        }
        out[n++] = c;
        p->pos++;
    }
    if (p->pos >= p->len)
        return s_fail (p, start, "unterminated string");
    p->pos++;
    if (n > KEEL_COND_VALUE_MAX)
        return s_fail (p, start, "string longer than %d bytes", KEEL_COND_VALUE_MAX);
    out[n] = 0;
    p->operand = (s_operand_t) { .off = (uint16_t) p->pool_used, .len = (uint16_t) n };
    p->pool_used += n + 1;
    p->operand.is_num = s_as_number (out, n, &p->operand.num);
    p->tok = T_STRING;
    return true;
}

// Reads the next token into p; false (err filled) on a bad one.
static bool
s_next (s_parser_t *p)
{
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t'))
        p->pos++;
    p->col = p->pos;
    if (p->pos >= p->len) {
        p->tok = T_END;
        p->tok_len = 0;
        return true;
    }
    const char *s = p->s + p->pos;
    size_t left = p->len - p->pos;
    char c = s[0], d = left > 1 ? s[1] : 0;
    size_t n = 1;
    if (c == '"') {
        bool ok = s_string (p);
        p->tok_len = p->pos - p->col;
        return ok;
    }
    if (s_name_char (c, true)) {
        while (n < left && s_name_char (s[n], false))
            n++;
        if (n > KEEL_COND_NAME_MAX)
            return s_fail (p, p->col, "property name longer than %d bytes", KEEL_COND_NAME_MAX);
        p->tok = T_NAME;
        p->operand = (s_operand_t) { .prop = true, .len = (uint16_t) n };
        p->operand.off = s_pool_add (p, s, n);
    }
    else if (isdigit ((unsigned char) c) || (c == '-' && isdigit ((unsigned char) d))) {
        n = s_number_len (s, left);
        size_t bad = n;
        while (bad < left && (s_name_char (s[bad], false) || s[bad] == '.'))
            bad++;
        if (bad > n || n > 64)
            return s_fail (p, p->col, "malformed number '%.*s'", (int) (bad > 40 ? 40 : bad), s);
        p->tok = T_NUMBER;
        p->operand = (s_operand_t) { .len = (uint16_t) n };
        p->operand.off = s_pool_add (p, s, n);
        p->operand.is_num = s_as_number (s, n, &p->operand.num);
    }
    else if (c == '&' && d == '&')
        p->tok = T_AND, n = 2;
    else if (c == '|' && d == '|')
        p->tok = T_OR, n = 2;
    else if (c == '(')
        p->tok = T_LP;
    else if (c == ')')
        p->tok = T_RP;
    else if (c == '=' && d == '=')
        p->tok = T_OP, p->op = S_EQ, n = 2;
    else if (c == '!' && d == '=')
        p->tok = T_OP, p->op = S_NE, n = 2;
    else if (c == '!')
        p->tok = T_NOT;
    else if (c == '<' || c == '>') {
        bool eq = d == '=';
        p->tok = T_OP;
        p->op = c == '<' ? (eq ? S_LE : S_LT) : (eq ? S_GE : S_GT);
        n = eq ? 2 : 1;
    }
    else if (c == '&' || c == '|' || c == '=')
        return s_fail (p, p->col, "unknown operator '%c' (did you mean '%c%c'?)", c, c, c);
    else if (isprint ((unsigned char) c))
        return s_fail (p, p->col, "unexpected character '%c'", c);
    else
        return s_fail (p, p->col, "unexpected byte 0x%02x", (unsigned) (unsigned char) c);
    p->pos += n;
    p->tok_len = n;
    return true;
}

// ---------------------------------------------------------------- parser

static bool s_or (s_parser_t *p, int depth);

static bool
s_emit (s_parser_t *p, s_node_t node)
{
    if (p->cond->nnodes >= p->cond->cap)
        return s_fail (p, p->col, "condition too complex");
    p->cond->nodes[p->cond->nnodes++] = node;
    return true;
}

static bool
s_is_operand (s_tok_t t)
{
    return t == T_NAME || t == T_STRING || t == T_NUMBER;
}

// What came before the token that should have started a condition.
static bool
s_expected_condition (s_parser_t *p, const char *after)
{
    if (p->tok == T_ERROR)
        return false;
    if (!after)
        return s_fail (p, p->col,
                       p->tok == T_END ? "empty condition"
                                       : "expected a property, a value, '!' or '(' to start "
                                         "a comparison");
    return s_fail (p, p->col, "expected a condition after '%s'", after);
}

static bool
s_comparison (s_parser_t *p)
{
    size_t start = p->col;
    s_node_t node = { .kind = S_CMP, .lhs = p->operand };
    size_t lhs_col = p->col, lhs_len = p->tok_len;
    if (!s_next (p))
        return false;
    if (p->tok != T_OP)
        return s_fail (p, p->col, "expected a comparison operator (== != < <= > >=) after '%.*s'",
                       (int) (lhs_len > 40 ? 40 : lhs_len), p->s + lhs_col);
    node.op = (uint8_t) p->op;
    if (!s_next (p))
        return false;
    if (!s_is_operand (p->tok))
        return s_fail (p, p->col, "expected a value after '%s'", s_op_text[node.op]);
    node.rhs = p->operand;
    node.col = (uint16_t) start;
    node.span = (uint16_t) (p->col + p->tok_len - start);
    return s_emit (p, node) && s_next (p);
}

static bool
s_unary (s_parser_t *p, int depth, const char *after)
{
    if (depth > KEEL_COND_MAX_DEPTH)
        return s_fail (p, p->col, "nested deeper than %d levels", KEEL_COND_MAX_DEPTH);
    if (p->tok == T_NOT) {
        if (!s_next (p) || !s_unary (p, depth + 1, "!"))
            return false;
        return s_emit (p, (s_node_t) { .kind = S_NOT });
    }
    if (p->tok == T_LP) {
        size_t open = p->col;
        if (!s_next (p))
            return false;
        if (!s_is_operand (p->tok) && p->tok != T_NOT && p->tok != T_LP)
            return s_expected_condition (p, "(");
        if (!s_or (p, depth + 1))
            return false;
        if (p->tok != T_RP)
            return s_fail (p, p->col, "expected ')' to close the '(' at column %zu", open + 1);
        return s_next (p);
    }
    if (s_is_operand (p->tok))
        return s_comparison (p);
    return s_expected_condition (p, after);
}

static bool
s_and (s_parser_t *p, int depth, const char *after)
{
    if (!s_unary (p, depth, after))
        return false;
    while (p->tok == T_AND) {
        if (!s_next (p) || !s_unary (p, depth, "&&") || !s_emit (p, (s_node_t) { .kind = S_AND }))
            return false;
    }
    return true;
}

static bool
s_or (s_parser_t *p, int depth)
{
    if (!s_and (p, depth, depth ? "(" : NULL))
        return false;
    while (p->tok == T_OR) {
        if (!s_next (p) || !s_and (p, depth, "||") || !s_emit (p, (s_node_t) { .kind = S_OR }))
            return false;
    }
    return true;
}

keel_cond_t *
keel_cond_parse (const char *text, keel_error_t *err)
{
    if (!text) {
        keel_error_set (err, KEEL_ERR_INVALID, "column 1: empty condition");
        return NULL;
    }
    size_t len = strnlen (text, KEEL_COND_MAX_LEN + 1);
    if (len > KEEL_COND_MAX_LEN) {
        keel_error_set (err, KEEL_ERR_INVALID, "column %d: condition longer than %d bytes",
                        KEEL_COND_MAX_LEN + 1, KEEL_COND_MAX_LEN);
        return NULL;
    }
    keel_cond_t *self = calloc (1, sizeof *self);
    if (self) {
        self->text = strdup (text);
        self->pool = malloc (2 * len + 2); // every token's bytes + a NUL each
        self->cap = len + 1;
        self->nodes = calloc (self->cap, sizeof *self->nodes);
    }
    if (!self || !self->text || !self->pool || !self->nodes) {
        keel_cond_destroy (&self);
        keel_error_set (err, KEEL_ERR_NOMEM, "no memory for a condition");
        return NULL;
    }
    s_parser_t p = { .s = text, .len = len, .cond = self, .err = err };
    bool ok = s_next (&p) && s_or (&p, 0);
    if (ok && p.tok == T_RP)
        ok = s_fail (&p, p.col, "')' without its '('");
    else if (ok && p.tok != T_END)
        ok = s_fail (&p, p.col, "expected '&&', '||' or the end, got '%.*s'",
                     (int) (p.tok_len > 40 ? 40 : p.tok_len), text + p.col);
    if (!ok)
        keel_cond_destroy (&self);
    return self;
}

void
keel_cond_destroy (keel_cond_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    keel_cond_t *self = *self_p;
    free (self->text);
    free (self->pool);
    free (self->nodes);
    free (self);
    *self_p = NULL;
}

const char *
keel_cond_text (const keel_cond_t *self)
{
    return self->text;
}

bool
keel_cond_name_ok (const char *name)
{
    if (!name || !s_name_char (name[0], true))
        return false;
    size_t n = 1;
    while (name[n] && s_name_char (name[n], false))
        n++;
    return name[n] == 0 && n <= KEEL_COND_NAME_MAX;
}

// ---------------------------------------------------------------- evaluation

typedef struct {
    bool value;
    uint16_t culprit; // the comparison that decided value
} s_slot_t;

// The operand's text: a property's value (NULL when not set) or the literal.
static const char *
s_value (const keel_cond_t *self, const s_operand_t *o, keel_cond_lookup_fn *lookup, void *arg)
{
    return o->prop ? lookup (self->pool + o->off, arg) : self->pool + o->off;
}

static bool
s_compare (const keel_cond_t *self, const s_node_t *n, keel_cond_lookup_fn *lookup, void *arg)
{
    const char *a = s_value (self, &n->lhs, lookup, arg);
    const char *b = s_value (self, &n->rhs, lookup, arg);
    if (!a || !b)
        return false;
    double x = 0, y = 0;
    int c;
    bool xa = n->lhs.prop ? s_as_number (a, strlen (a), &x) : (x = n->lhs.num, n->lhs.is_num);
    bool yb = n->rhs.prop ? s_as_number (b, strlen (b), &y) : (y = n->rhs.num, n->rhs.is_num);
    if (xa && yb)
        c = x < y ? -1 : x > y ? 1 : 0;
    else
        c = strcmp (a, b);
    switch ((s_op_t) n->op) {
        case S_EQ:
            return c == 0;
        case S_NE:
            return c != 0;
        case S_LT:
            return c < 0;
        case S_LE:
            return c <= 0;
        case S_GT:
            return c > 0;
        case S_GE:
            return c >= 0;
    }
    return false;
}

// Appends " NAME = "value"" (or "NAME is not set") for a property operand.
static size_t
s_explain_operand (const keel_cond_t *self, const s_operand_t *o, keel_cond_lookup_fn *lookup,
                   void *arg, char *out, size_t size, size_t at)
{
    if (!o->prop || at >= size)
        return at;
    const char *name = self->pool + o->off;
    const char *v = lookup (name, arg);
    int n = v ? snprintf (out + at, size - at, "%s%s = \"%.80s\"", at ? ", " : "", name, v)
              : snprintf (out + at, size - at, "%s%s is not set", at ? ", " : "", name);
    return n > 0 ? at + (size_t) n : at;
}

static void
s_explain (const keel_cond_t *self, const s_node_t *n, bool value, keel_cond_lookup_fn *lookup,
           void *arg, char *why, size_t size)
{
    char seen[300] = "";
    size_t at = s_explain_operand (self, &n->lhs, lookup, arg, seen, sizeof seen, 0);
    s_explain_operand (self, &n->rhs, lookup, arg, seen, sizeof seen, at);
    snprintf (why, size, "%.*s is %s%s%s%s", (int) n->span, self->text + n->col,
              value ? "true" : "false", *seen ? " (" : "", seen, *seen ? ")" : "");
}

bool
keel_cond_eval (const keel_cond_t *self, keel_cond_lookup_fn *lookup, void *arg, char *why,
                size_t why_size)
{
    s_slot_t stack[S_MAX_STACK];
    size_t top = 0;
    for (size_t i = 0; i < self->nnodes; i++) {
        const s_node_t *n = &self->nodes[i];
        switch ((s_kind_t) n->kind) {
            case S_CMP:
                stack[top++] = (s_slot_t) { s_compare (self, n, lookup, arg), (uint16_t) i };
                break;
            case S_NOT:
                stack[top - 1].value = !stack[top - 1].value;
                break;
            case S_AND:
            case S_OR: {
                s_slot_t r = stack[--top], *l = &stack[top - 1];
                bool and = n->kind == S_AND;
                // The side that decided: for && the false one (the left
                // first), for || the true one; else the right.
                if (l->value != and)
                    break; // l decided: keep it
                *l = r;
                break;
            }
        }
    }
    bool value = top == 1 && stack[0].value;
    if (!value && why && why_size) {
        if (top == 1) {
            const s_node_t *n = &self->nodes[stack[0].culprit];
            s_explain (self, n, s_compare (self, n, lookup, arg), lookup, arg, why, why_size);
        }
        else
            snprintf (why, why_size, "no condition");
    }
    return value;
}
