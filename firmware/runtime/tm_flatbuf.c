#include "tm_flatbuf.h"

#include <string.h>

void tm_fb_init(tm_fb *fb, const uint8_t *data, uint32_t len)
{
    fb->p = data;
    fb->n = len;
    fb->err = 0;
}

/* True when [pos, pos+size) lies inside the buffer (overflow safe). */
static int in_bounds(const tm_fb *fb, uint32_t pos, uint32_t size)
{
    return pos <= fb->n && size <= fb->n - pos;
}

static int check(tm_fb *fb, uint32_t pos, uint32_t size)
{
    if (!in_bounds(fb, pos, size)) {
        fb->err = 1;
        return 0;
    }
    return 1;
}

uint8_t tm_fb_u8(tm_fb *fb, uint32_t pos)
{
    return check(fb, pos, 1) ? fb->p[pos] : 0;
}

uint16_t tm_fb_u16(tm_fb *fb, uint32_t pos)
{
    if (!check(fb, pos, 2)) return 0;
    return (uint16_t)(fb->p[pos] | (fb->p[pos + 1] << 8));
}

uint32_t tm_fb_u32(tm_fb *fb, uint32_t pos)
{
    if (!check(fb, pos, 4)) return 0;
    return (uint32_t)fb->p[pos] | ((uint32_t)fb->p[pos + 1] << 8) |
           ((uint32_t)fb->p[pos + 2] << 16) | ((uint32_t)fb->p[pos + 3] << 24);
}

int32_t tm_fb_i32(tm_fb *fb, uint32_t pos)
{
    return (int32_t)tm_fb_u32(fb, pos);
}

int64_t tm_fb_i64(tm_fb *fb, uint32_t pos)
{
    uint64_t lo = tm_fb_u32(fb, pos);
    uint64_t hi = tm_fb_u32(fb, pos + 4);
    return (int64_t)(lo | (hi << 32));
}

float tm_fb_f32(tm_fb *fb, uint32_t pos)
{
    uint32_t bits = tm_fb_u32(fb, pos);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Follow a uoffset stored at `pos`; 0 on error. */
static uint32_t follow(tm_fb *fb, uint32_t pos)
{
    uint32_t off = tm_fb_u32(fb, pos);
    if (fb->err) return 0;
    if (off == 0 || !in_bounds(fb, pos, off) || pos + off >= fb->n) {
        fb->err = 1;
        return 0;
    }
    return pos + off;
}

uint32_t tm_fb_root(tm_fb *fb)
{
    if (fb->n < 8) {
        fb->err = 1;
        return 0;
    }
    return follow(fb, 0);
}

uint32_t tm_fb_field(tm_fb *fb, uint32_t table, int id, uint32_t size)
{
    int32_t soff;
    int64_t vt;
    uint16_t vt_size, tbl_size, fo;
    if (table == 0 || fb->err) return 0;
    soff = tm_fb_i32(fb, table);
    vt = (int64_t)table - (int64_t)soff;
    if (fb->err || vt < 0 || vt > (int64_t)fb->n) {
        fb->err = 1;
        return 0;
    }
    vt_size = tm_fb_u16(fb, (uint32_t)vt);
    tbl_size = tm_fb_u16(fb, (uint32_t)vt + 2);
    if (fb->err || vt_size < 4 || (vt_size & 1u)) {
        fb->err = 1;
        return 0;
    }
    if ((uint32_t)(4 + 2 * id) + 2 > vt_size) return 0; /* older schema: absent */
    fo = tm_fb_u16(fb, (uint32_t)vt + 4 + 2 * (uint32_t)id);
    if (fo == 0) return 0;
    if ((uint32_t)fo + size > tbl_size || !check(fb, table + fo, size)) {
        fb->err = 1;
        return 0;
    }
    return table + fo;
}

int32_t tm_fb_field_i32(tm_fb *fb, uint32_t table, int id, int32_t dflt)
{
    uint32_t pos = tm_fb_field(fb, table, id, 4);
    return pos ? tm_fb_i32(fb, pos) : dflt;
}

uint32_t tm_fb_field_u32(tm_fb *fb, uint32_t table, int id, uint32_t dflt)
{
    uint32_t pos = tm_fb_field(fb, table, id, 4);
    return pos ? tm_fb_u32(fb, pos) : dflt;
}

uint8_t tm_fb_field_u8(tm_fb *fb, uint32_t table, int id, uint8_t dflt)
{
    uint32_t pos = tm_fb_field(fb, table, id, 1);
    return pos ? tm_fb_u8(fb, pos) : dflt;
}

int8_t tm_fb_field_i8(tm_fb *fb, uint32_t table, int id, int8_t dflt)
{
    uint32_t pos = tm_fb_field(fb, table, id, 1);
    return pos ? (int8_t)tm_fb_u8(fb, pos) : dflt;
}

float tm_fb_field_f32(tm_fb *fb, uint32_t table, int id, float dflt)
{
    uint32_t pos = tm_fb_field(fb, table, id, 4);
    return pos ? tm_fb_f32(fb, pos) : dflt;
}

uint32_t tm_fb_field_table(tm_fb *fb, uint32_t table, int id)
{
    uint32_t pos = tm_fb_field(fb, table, id, 4);
    return pos ? follow(fb, pos) : 0;
}

uint32_t tm_fb_field_vector(tm_fb *fb, uint32_t table, int id, uint32_t elem_size,
                            uint32_t *count)
{
    uint32_t pos = tm_fb_field(fb, table, id, 4);
    uint32_t vec, n;
    *count = 0;
    if (!pos) return 0;
    vec = follow(fb, pos);
    if (!vec) return 0;
    n = tm_fb_u32(fb, vec);
    if (fb->err) return 0;
    if (elem_size && n > (fb->n - vec - 4) / elem_size) {
        fb->err = 1;
        return 0;
    }
    if (!check(fb, vec + 4, n * elem_size)) return 0;
    *count = n;
    return vec + 4;
}

uint32_t tm_fb_vector_table(tm_fb *fb, uint32_t elems, uint32_t count, uint32_t i)
{
    if (i >= count || elems == 0) {
        fb->err = 1;
        return 0;
    }
    return follow(fb, elems + 4 * i);
}

const char *tm_fb_field_string(tm_fb *fb, uint32_t table, int id, uint32_t *len)
{
    uint32_t pos = tm_fb_field_vector(fb, table, id, 1, len);
    return pos ? (const char *)(fb->p + pos) : 0;
}
