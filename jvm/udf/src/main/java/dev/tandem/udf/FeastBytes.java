package dev.tandem.udf;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;

/**
 * The few protobuf and Feast byte layouts the online sink writes, spelled out.
 *
 * <p>Every layout fact that is not a wire-format rule (the hash key's prefix and
 * suffix, murmur3 field names, the {@code Value} field numbers) is computed in
 * Python by Feast's own functions ({@code stream_jobs/online_sink.py}) and passed
 * in; this class only applies protobuf's encoding rules. tests/test_online_sink_jvm.py
 * checks the bytes against Feast's, value for value.
 */
final class FeastBytes {
    private FeastBytes() {}

    /** A protobuf varint (negative int64: ten bytes, two's complement). */
    static void varint(ByteArrayOutputStream out, long v) {
        while ((v & ~0x7FL) != 0) {
            out.write((int) ((v & 0x7F) | 0x80));
            v >>>= 7;
        }
        out.write((int) v);
    }

    /** {@code feast.types.Value(int64_val=v)}: field {@code field}, wire type 0. */
    static byte[] int64Value(int field, long v) {
        ByteArrayOutputStream out = new ByteArrayOutputStream(11);
        varint(out, (long) field << 3);
        varint(out, v);
        return out.toByteArray();
    }

    /** {@code feast.types.Value(double_val=v)}: field {@code field}, wire type 1, little-endian bits. */
    static byte[] doubleValue(int field, double v) {
        ByteArrayOutputStream out = new ByteArrayOutputStream(10);
        varint(out, ((long) field << 3) | 1);
        long bits = Double.doubleToRawLongBits(v);
        for (int i = 0; i < 8; i++) {
            out.write((int) (bits >>> (8 * i)) & 0xFF);
        }
        return out.toByteArray();
    }

    /** {@code google.protobuf.Timestamp} of epoch milliseconds (floor seconds, as Python's FromMilliseconds). */
    static byte[] timestamp(long epochMs) {
        long seconds = Math.floorDiv(epochMs, 1000L);
        int nanos = (int) Math.floorMod(epochMs, 1000L) * 1_000_000;
        ByteArrayOutputStream out = new ByteArrayOutputStream(16);
        if (seconds != 0) {
            varint(out, 1 << 3);
            varint(out, seconds);
        }
        if (nanos != 0) {
            varint(out, 2 << 3);
            varint(out, nanos);
        }
        return out.toByteArray();
    }

    /** Feast's Redis hash key of a one-string-key entity: prefix, uint32 LE length, UTF-8 value, suffix. */
    static byte[] hashKey(byte[] prefix, String value, byte[] suffix) {
        byte[] v = value.getBytes(StandardCharsets.UTF_8);
        byte[] key = new byte[prefix.length + 4 + v.length + suffix.length];
        System.arraycopy(prefix, 0, key, 0, prefix.length);
        int n = v.length;
        for (int i = 0; i < 4; i++) {
            key[prefix.length + i] = (byte) (n >>> (8 * i));
        }
        System.arraycopy(v, 0, key, prefix.length + 4, v.length);
        System.arraycopy(suffix, 0, key, prefix.length + 4 + v.length, suffix.length);
        return key;
    }

    static byte[] hex(String s) {
        byte[] out = new byte[s.length() / 2];
        for (int i = 0; i < out.length; i++) {
            out[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        }
        return out;
    }
}
