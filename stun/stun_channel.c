/* stun_channel.c: ChannelData framing (RFC 8656 section 12) and stream framing. */
#include <string.h>

#include "stun.h"
#include "stun_internal.h"

int stun_chdata_decode(const uint8_t *buf, size_t len, bool stream, uint16_t *ch,
                       const uint8_t **data, uint16_t *dlen)
{
    if (len < STUN_CHDATA_HEADER_LEN) return STUN_E_TRUNCATED;
    /* First two bits 01 is exactly the channel range 0x4000-0x7FFF. */
    if ((buf[0] & 0xC0) != 0x40) return STUN_E_NOT_CHANNELDATA;
    uint16_t n = rd16(buf + 2);
    size_t frame;
    if (stream) {
        /* Over TCP/TLS the frame is padded to a multiple of 4 (RFC 8656 12.5). */
        frame = STUN_CHDATA_HEADER_LEN + pad4(n);
        if (frame > len) return STUN_E_TRUNCATED;
    } else {
        /* Over UDP padding is optional; a datagram longer than header + data + 3 bytes of
         * padding is not a ChannelData message. */
        if ((size_t)STUN_CHDATA_HEADER_LEN + n > len) return STUN_E_TRUNCATED;
        if (len - STUN_CHDATA_HEADER_LEN - n > 3) return STUN_E_BAD_LENGTH;
        frame = len;
    }
    *ch = rd16(buf);
    *data = buf + STUN_CHDATA_HEADER_LEN;
    *dlen = n;
    return (int)frame;
}

void stun_chdata_header(uint8_t hdr[STUN_CHDATA_HEADER_LEN], uint16_t ch, uint16_t dlen)
{
    wr16(hdr, ch);
    wr16(hdr + 2, dlen);
}

int stun_chdata_encode(uint8_t *buf, size_t cap, uint16_t ch, const uint8_t *data, uint16_t dlen,
                       bool stream)
{
    if (ch < STUN_CHANNEL_MIN || ch > STUN_CHANNEL_MAX) return STUN_E_BAD_CHANNEL;
    size_t total = STUN_CHDATA_HEADER_LEN + (stream ? pad4(dlen) : dlen);
    if (total > cap) return STUN_E_NO_SPACE;
    if (data != buf + STUN_CHDATA_HEADER_LEN && dlen)
        memmove(buf + STUN_CHDATA_HEADER_LEN, data, dlen);
    stun_chdata_header(buf, ch, dlen);
    memset(buf + STUN_CHDATA_HEADER_LEN + dlen, 0, total - STUN_CHDATA_HEADER_LEN - dlen);
    return (int)total;
}

int stun_frame_length(const uint8_t *buf, size_t avail)
{
    if (avail < 4) return 0;
    uint16_t n = rd16(buf + 2);
    switch (buf[0] & 0xC0) {
    case 0x00:
        if (n & 3) return STUN_E_NOT_STUN;
        return STUN_HEADER_LEN + n;
    case 0x40:
        return (int)(STUN_CHDATA_HEADER_LEN + pad4(n));
    default:
        return STUN_E_NOT_STUN;
    }
}
