/* mapping.c - Proxmox's USB resource mappings (mapping.h).
 *
 * The line rules are those of PVE::SectionConfig's parse_config: a line
 * whose first non-blank is '#' is skipped everywhere, an empty line ends
 * a section, a section starts with a header at column 0 ("id" alone) and
 * holds indented "key value" lines.  Lines are read in place, so no line
 * length is assumed; values we keep are copied into bounded buffers.
 */
#include "reconcile/mapping.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/grow.h"
#include "common/text.h"
#include "common/trust.h"
#include "reconcile/port.h"

struct span {
	const char *s;  /* not NUL-terminated */
	size_t n;
};

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

static struct span trim(struct span l)
{
	while (l.n && is_blank(l.s[0]))
		l.s++, l.n--;
	while (l.n && is_blank(l.s[l.n - 1]))
		l.n--;
	return l;
}

/* The first word of l (l must start with a non-blank); l keeps the rest. */
static struct span word(struct span *l)
{
	struct span w = { l->s, 0 };

	while (w.n < l->n && !is_blank(l->s[w.n]))
		w.n++;
	l->s += w.n, l->n -= w.n;
	*l = trim(*l);
	return w;
}

static bool span_is(struct span s, const char *lit)
{
	return s.n == strlen(lit) && memcmp(s.s, lit, s.n) == 0;
}

bool mapping_id_valid(const char *id)
{
	size_t n = strlen(id);

	if (n < 2 || n >= MAPPING_ID_MAX || !isalpha((unsigned char)id[0]))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!isalnum((unsigned char)id[i]) && id[i] != '_' && id[i] != '-')
			return false;
	return true;
}

bool mapping_node_valid(const char *node)
{
	size_t n = strlen(node);

	if (n == 0 || n >= NODE_NAME_MAX || node[0] == '-' || node[n - 1] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)node[i]) && node[i] != '-')
			return false;
	return true;
}

bool mapping_default_node(char *buf, size_t n, struct err *e)
{
	char host[256] = "";

	if (gethostname(host, sizeof host - 1) != 0)
		return err_set(e, ERR_IO, "gethostname: %s", strerror(errno));
	host[strcspn(host, ".")] = '\0';
	if (!mapping_node_valid(host) || strlen(host) >= n) {
		char shown[80];
		return err_set(e, ERR_USAGE, "host name '%s' is not a Proxmox node name: give --node",
			       text_escape(shown, sizeof shown, host));
	}
	snprintf(buf, n, "%s", host);
	return true;
}

/* ---- one map entry: a property string ---------------------------------- */

/* Take "key=value" or key="quoted \"value\"" off the front of *s, the value
 * unescaped into val[0..n) (*cut when it did not fit).  False when *s does
 * not start with one. */
static bool next_kv(struct span *s, struct span *key, char *val, size_t n, bool *cut)
{
	size_t i = 0, o = 0;
	bool quoted;

	while (i < s->n && s->s[i] != '=' && s->s[i] != ',')
		i++;
	if (i == 0 || i == s->n || s->s[i] != '=')
		return false;
	*key = (struct span){ s->s, i++ };
	*cut = false;
	quoted = i < s->n && s->s[i] == '"';
	for (i += quoted; i < s->n && (quoted ? s->s[i] != '"' : s->s[i] != ','); i++) {
		if (quoted && s->s[i] == '\\' && i + 1 < s->n)
			i++;
		if (o + 1 < n)
			val[o++] = s->s[i];
		else
			*cut = true;
	}
	val[o] = '\0';
	if (quoted && (i++ == s->n))
		return false; /* no closing quote */
	if (i < s->n && s->s[i++] != ',')
		return false;
	s->s += i, s->n -= i;
	return true;
}

static bool parse_hex16(const char *s, uint16_t *out)
{
	unsigned v = 0;

	for (int i = 0; i < 4; i++) {
		if (!isxdigit((unsigned char)s[i]))
			return false;
		v = v * 16 + (unsigned)(isdigit((unsigned char)s[i]) ? s[i] - '0'
					: tolower((unsigned char)s[i]) - 'a' + 10);
	}
	*out = (uint16_t)v;
	return true;
}

/* Take one key's value into ent; NULL when fine, else why not. */
static const char *take_kv(struct span key, const char *val, bool cut, struct mapping_entry *ent,
			   unsigned *seen)
{
	static const char *const keys[] = { "node", "id", "path", "description" };
	unsigned k = 0;

	while (k < 4 && !span_is(key, keys[k]))
		k++;
	if (k == 4)
		return "unknown key";
	if (*seen & (1u << k))
		return "key given twice";
	*seen |= 1u << k;
	if (k == 3)
		return NULL; /* description: any text, not kept */
	if (cut)
		return "value too long";
	if (k == 0) {
		if (!mapping_node_valid(val))
			return "bad node name";
		snprintf(ent->node, sizeof ent->node, "%s", val);
		return NULL;
	}
	if (k == 1)
		return strlen(val) == 9 && val[4] == ':' && parse_hex16(val, &ent->vid) &&
		       parse_hex16(val + 5, &ent->pid) ? NULL : "bad id (expected VVVV:PPPP)";
	ent->has_path = true;
	return port_parse(val, &ent->path) ? NULL : "bad path (expected BUS-PORT[.PORT]...)";
}

/* Parse a map value into ent; NULL when fine, else why not. */
static const char *parse_map(struct span v, struct mapping_entry *ent)
{
	char val[128];
	struct span key;
	unsigned seen = 0;
	bool cut;

	while (v.n) {
		if (!next_kv(&v, &key, val, sizeof val, &cut))
			return "expected key=value[,key=value]...";
		const char *why = take_kv(key, val, cut, ent, &seen);
		if (why)
			return why;
	}
	return (seen & 3u) == 3u ? NULL : "node= and id= are required";
}

/* ---- the file ------------------------------------------------------------ */

struct parse {
	const char *path;
	unsigned lineno;
	long sec;         /* section being read, -1 none, -2 one being skipped */
	struct mappings *m;
};

static void warn(struct parse *p, const char *why, struct span l)
{
	char cut[48], shown[96];

	if (p->m->warn.kind != ERR_NONE)
		return;
	snprintf(cut, sizeof cut, "%.*s", (int)(l.n < 40 ? l.n : 40), l.s);
	err_set(&p->m->warn, ERR_CONFIG, "%s:%u: %s: '%s' ignored", p->path, p->lineno, why,
		text_escape(shown, sizeof shown, cut));
}

static bool add_section(struct parse *p, struct span id, struct err *e)
{
	char name[MAPPING_ID_MAX];
	struct mappings *m = p->m;

	p->sec = -2;
	snprintf(name, sizeof name, "%.*s", (int)(id.n < sizeof name ? id.n : sizeof name - 1), id.s);
	if (id.n >= sizeof name || !mapping_id_valid(name) || memchr(id.s, '\0', id.n)) {
		warn(p, "not a mapping id, section skipped", id);
		return true;
	}
	if (mapping_find(m, name) >= 0) {
		warn(p, "mapping given twice, the first is used", id);
		return true;
	}
	struct mapping_section *n = grow_array(m->secs, &m->secs_cap, m->nsecs + 1, sizeof *n, MAPPING_MAX);
	if (!n)
		return err_set(e, ERR_NOMEM, "%s:%u: more than %d mappings or out of memory",
			       p->path, p->lineno, MAPPING_MAX);
	m->secs = n;
	snprintf(m->secs[m->nsecs].id, sizeof m->secs[m->nsecs].id, "%s", name);
	m->secs[m->nsecs].line = p->lineno;
	p->sec = (long)m->nsecs++;
	return true;
}

static bool add_entry(struct parse *p, struct span v, struct err *e)
{
	struct mapping_entry ent = { .section = (size_t)p->sec, .line = p->lineno };
	struct mappings *m = p->m;
	const char *why = memchr(v.s, '\0', v.n) ? "NUL byte" : parse_map(v, &ent);

	if (why) {
		warn(p, why, v);
		return true;
	}
	struct mapping_entry *n = grow_array(m->ents, &m->ents_cap, m->nents + 1, sizeof *n, MAPPING_MAX);
	if (!n)
		return err_set(e, ERR_NOMEM, "%s:%u: more than %d map entries or out of memory",
			       p->path, p->lineno, MAPPING_MAX);
	m->ents = n;
	m->ents[m->nents++] = ent;
	return true;
}

static bool parse_line(struct parse *p, struct span raw, struct err *e)
{
	struct span l = trim(raw);

	if (l.n && l.s[0] == '#')
		return true;
	if (raw.n == 0) {
		p->sec = -1;
		return true;
	}
	if (p->sec == -1) {
		struct span rest = l, id = l.n && l.s == raw.s ? word(&rest) : l;
		if (l.s != raw.s || rest.n)
			warn(p, "not a section header", raw);
		else
			return add_section(p, id, e);
		return true;
	}
	if (l.s == raw.s || l.n == 0) {
		warn(p, "not an indented property line", raw);
		return true;
	}
	if (p->sec < 0)
		return true; /* a skipped section */
	struct span key = word(&l);
	if (span_is(key, "map"))
		return add_entry(p, l, e);
	if (!span_is(key, "description"))
		warn(p, "unknown property", key);
	return true;
}

bool mapping_parse(const char *text, size_t len, const char *path, struct mappings *m,
		   struct err *e)
{
	struct parse p = { .path = path, .sec = -1, .m = m };

	memset(m, 0, sizeof *m);
	for (size_t pos = 0; pos < len;) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - text) : len;
		p.lineno++;
		if (!parse_line(&p, (struct span){ text + pos, end - pos }, e)) {
			mapping_clear(m);
			return false;
		}
		pos = end + 1;
	}
	return true;
}

bool mapping_load(const char *file, struct mappings *m, struct err *e)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(file, '/');
	char *text = NULL;
	size_t len = 0;
	bool ok;

	memset(m, 0, sizeof *m);
	if (strlen(file) >= sizeof dir)
		return err_set(e, ERR_CONFIG, "mapping file: path too long");
	snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash == file ? 1 : slash - file) : 1,
		 slash ? file : ".");
	int fd = trust_open_dir(dir, e);
	if (fd < 0)
		return err_prefix(e, "mapping file %s: ", file);
	ok = trust_read(fd, slash ? slash + 1 : file, file, MAPPING_FILE_MAX, &text, &len, e) &&
	     mapping_parse(text, len, file, m, e);
	close(fd);
	free(text);
	return ok;
}

long mapping_find(const struct mappings *m, const char *id)
{
	for (size_t i = 0; i < m->nsecs; i++)
		if (strcmp(m->secs[i].id, id) == 0)
			return (long)i;
	return -1;
}

void mapping_clear(struct mappings *m)
{
	free(m->secs);
	free(m->ents);
	memset(m, 0, sizeof *m);
}
