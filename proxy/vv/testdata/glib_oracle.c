/* glib_oracle: GLib's own GKeyFile functions, for oracle_test.go.
 *
 * Built by the test with `gcc glib_oracle.c -l:libglib-2.0.so.0` (the
 * runtime library is enough: the few prototypes are declared here, so
 * no -dev package is needed).
 *
 *   glib_oracle escape   stdin: one hex-encoded string per line;
 *                        stdout: the value g_key_file_set_string writes.
 *   glib_oracle list     stdin: per line, hex-encoded items separated by
 *                        ',' ('-' is the empty item, an empty line no item);
 *                        stdout: the value g_key_file_set_string_list writes.
 *   glib_oracle read     stdin: a key file; stdout: per key of every group,
 *                        "GROUP KEY RAW STRING LIST" in hex ('!' when GLib
 *                        refuses that reading), or "ERROR message".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct _GKeyFile GKeyFile;
typedef struct { unsigned int domain; int code; char *message; } GError;
GKeyFile *g_key_file_new(void);
void g_key_file_free(GKeyFile *);
void g_key_file_set_string(GKeyFile *, const char *, const char *, const char *);
void g_key_file_set_string_list(GKeyFile *, const char *, const char *, const char *const *, size_t);
char *g_key_file_get_value(GKeyFile *, const char *, const char *, GError **);
char *g_key_file_get_string(GKeyFile *, const char *, const char *, GError **);
char **g_key_file_get_string_list(GKeyFile *, const char *, const char *, size_t *, GError **);
char **g_key_file_get_groups(GKeyFile *, size_t *);
char **g_key_file_get_keys(GKeyFile *, const char *, size_t *, GError **);
int g_key_file_load_from_data(GKeyFile *, const char *, size_t, int, GError **);

static void put_hex(const char *s) {
	if (!*s) { fputs("-", stdout); return; }
	for (; *s; s++) printf("%02x", (unsigned char)*s);
}

static char *unhex(const char *h, size_t n) {
	char *out = calloc(n / 2 + 1, 1);
	for (size_t i = 0; i + 1 < n; i += 2) {
		unsigned int c;
		sscanf(h + i, "%2x", &c);
		out[i / 2] = (char)c;
	}
	return out;
}

static char *read_all(size_t *len) {
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);
	size_t r;
	while ((r = fread(buf + n, 1, cap - n, stdin)) > 0) {
		n += r;
		if (n == cap) buf = realloc(buf, cap *= 2);
	}
	buf[n] = 0;
	*len = n;
	return buf;
}

int main(int argc, char **argv) {
	if (argc != 2) return 2;
	if (!strcmp(argv[1], "escape") || !strcmp(argv[1], "list")) {
		int list = !strcmp(argv[1], "list");
		char line[1 << 16];
		while (fgets(line, sizeof line, stdin)) {
			size_t n = strcspn(line, "\n");
			line[n] = 0;
			GKeyFile *k = g_key_file_new();
			if (!list) {
				char *s = unhex(line, n);
				g_key_file_set_string(k, "g", "k", s);
				free(s);
			} else {
				char *items[4096];
				size_t count = 0;
				char *save = NULL;
				for (char *tok = strtok_r(line, ",", &save); tok && count < 4096; tok = strtok_r(NULL, ",", &save))
					items[count++] = strcmp(tok, "-") ? unhex(tok, strlen(tok)) : calloc(1, 1);
				g_key_file_set_string_list(k, "g", "k", (const char *const *)items, count);
				for (size_t i = 0; i < count; i++) free(items[i]);
			}
			char *v = g_key_file_get_value(k, "g", "k", NULL);
			printf("%s\n", v ? v : "");
			g_key_file_free(k);
		}
		return 0;
	}
	if (!strcmp(argv[1], "read")) {
		size_t len;
		char *data = read_all(&len);
		GKeyFile *k = g_key_file_new();
		GError *err = NULL;
		if (!g_key_file_load_from_data(k, data, len, 3 /* KEEP_COMMENTS | KEEP_TRANSLATIONS, as virt-viewer */, &err)) {
			printf("ERROR %s\n", err->message);
			return 0;
		}
		char **groups = g_key_file_get_groups(k, NULL);
		for (char **g = groups; *g; g++) {
			char **keys = g_key_file_get_keys(k, *g, NULL, NULL);
			for (char **key = keys; key && *key; key++) {
				put_hex(*g); putchar(' '); put_hex(*key); putchar(' ');
				put_hex(g_key_file_get_value(k, *g, *key, NULL)); putchar(' ');
				err = NULL;
				char *s = g_key_file_get_string(k, *g, *key, &err);
				if (s) put_hex(s); else putchar('!');
				putchar(' ');
				err = NULL;
				size_t n = 0;
				char **l = g_key_file_get_string_list(k, *g, *key, &n, &err);
				if (!l) putchar('!');
				else {
					printf("%zu", n);
					for (size_t i = 0; i < n; i++) { putchar(','); put_hex(l[i]); }
				}
				putchar('\n');
			}
		}
		return 0;
	}
	return 2;
}
