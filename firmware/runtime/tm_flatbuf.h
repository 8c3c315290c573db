/* Bounds-checked reader for the FlatBuffers wire format (little endian).
 *
 * Every accessor takes absolute byte positions inside the buffer and checks
 * them against the buffer length.  A failed check sets fb->err and returns a
 * neutral value (0), so callers can test fb->err once after a batch of reads.
 * Position 0 doubles as "absent": no table, vector or field can start at
 * byte 0 because the root offset lives there.
 */
#ifndef TM_FLATBUF_H
#define TM_FLATBUF_H

#include <stdint.h>

typedef struct {
    const uint8_t *p;
    uint32_t n;
    int err;
} tm_fb;

void tm_fb_init(tm_fb *fb, const uint8_t *data, uint32_t len);

uint8_t tm_fb_u8(tm_fb *fb, uint32_t pos);
uint16_t tm_fb_u16(tm_fb *fb, uint32_t pos);
uint32_t tm_fb_u32(tm_fb *fb, uint32_t pos);
int32_t tm_fb_i32(tm_fb *fb, uint32_t pos);
int64_t tm_fb_i64(tm_fb *fb, uint32_t pos);
float tm_fb_f32(tm_fb *fb, uint32_t pos);

/* Position of the root table (0 on error). */
uint32_t tm_fb_root(tm_fb *fb);

/* Absolute position of field `id` of the table at `table`, or 0 when the
 * field is absent.  `size` is the byte size the caller will read there. */
uint32_t tm_fb_field(tm_fb *fb, uint32_t table, int id, uint32_t size);

/* Scalar fields with defaults. */
int32_t tm_fb_field_i32(tm_fb *fb, uint32_t table, int id, int32_t dflt);
uint32_t tm_fb_field_u32(tm_fb *fb, uint32_t table, int id, uint32_t dflt);
uint8_t tm_fb_field_u8(tm_fb *fb, uint32_t table, int id, uint8_t dflt);
int8_t tm_fb_field_i8(tm_fb *fb, uint32_t table, int id, int8_t dflt);
float tm_fb_field_f32(tm_fb *fb, uint32_t table, int id, float dflt);

/* Follow an offset field to a sub-table; 0 when absent. */
uint32_t tm_fb_field_table(tm_fb *fb, uint32_t table, int id);

/* Follow an offset field to a vector of `elem_size`-byte elements.  Returns
 * the position of element 0 and stores the element count (0 when absent). */
uint32_t tm_fb_field_vector(tm_fb *fb, uint32_t table, int id, uint32_t elem_size,
                            uint32_t *count);

/* Element `i` of a vector of tables (the vector holds offsets). */
uint32_t tm_fb_vector_table(tm_fb *fb, uint32_t elems, uint32_t count, uint32_t i);

/* Bytes of a string field (not NUL terminated); length in *len. */
const char *tm_fb_field_string(tm_fb *fb, uint32_t table, int id, uint32_t *len);

#endif
