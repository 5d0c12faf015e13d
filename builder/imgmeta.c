/* The image's metadata under ./.imgbuild/ (see imgmeta.h). */
#include <string.h>

#include "imgmeta.h"
#include "toml.h"

void ib_facts_free(struct ib_facts *f)
{
	free(f->min_driver);
	ib_strv_free(&f->archs);
	memset(f, 0, sizeof(*f));
}

void ib_facts_split_archs(const char *s, struct ib_strv *out)
{
	cleanup_free char *copy = xstrdup(s);
	for (char *save = NULL, *t = strtok_r(copy, "; ,", &save); t; t = strtok_r(NULL, "; ,", &save))
		ib_strv_push(out, t);
}

static const struct ib_toml_value *fact(const struct ib_toml_value *root, const char *key)
{
	const struct ib_toml_value *v = ib_toml_get(root, key);
	if (v == NULL)
		v = ib_toml_get(ib_toml_get(root, "stack"), key);
	return v;
}

int ib_facts_parse(const char *text, size_t len, const char *path, struct ib_facts *f, ib_error_t *err)
{
	memset(f, 0, sizeof(*f));
	cleanup_toml struct ib_toml_value *root = ib_toml_parse(text, len, path, err);
	if (root == NULL)
		return -1;
	const struct ib_toml_value *v = fact(root, "min_driver");
	if (v && v->type == IB_TOML_STRING && v->u.str[0])
		f->min_driver = xstrdup(v->u.str);
	v = fact(root, "archs");
	if (v && v->type == IB_TOML_STRING) {
		ib_facts_split_archs(v->u.str, &f->archs);
		f->have_archs = true;
	} else if (v && v->type == IB_TOML_ARRAY) {
		for (size_t i = 0; i < v->len; i++)
			if (v->items[i]->type == IB_TOML_STRING)
				ib_facts_split_archs(v->items[i]->u.str, &f->archs);
		f->have_archs = true;
	}
	v = fact(root, "ptx_jit");
	if (v && v->type == IB_TOML_BOOL)
		f->ptx_jit = v->u.boolean;
	else if (v && v->type == IB_TOML_STRING)
		f->ptx_jit = !strcmp(v->u.str, "true") || !strcmp(v->u.str, "1") || !strcmp(v->u.str, "yes");
	return 0;
}

int ib_facts_read_tree(const char *tree, struct ib_facts *f, bool *found, ib_error_t *err)
{
	memset(f, 0, sizeof(*f));
	*found = false;
	cleanup_free char *path = ib_path_join(tree, IB_META_FACTS);
	if (!ib_path_exists(path))
		return 0;
	size_t len = 0;
	cleanup_free char *text = ib_read_file(path, &len, err);
	if (text == NULL)
		return -1;
	if (ib_facts_parse(text, len, path, f, err) < 0)
		return -1;
	*found = true;
	return 0;
}
