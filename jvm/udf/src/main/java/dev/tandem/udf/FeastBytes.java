package dev.tandem.udf;

import java.io.ByteArrayOutputStream;

/**
 * The few protobuf and Feast byte layouts the online sink writes, spelled out.
 *
 * <p>Every layout fact that is not a wire-format rule (the hash key's bytes around
 * each key value, murmur3 field names, the {@code Value} field numbers) is computed in
 * Python by Feast's own functions ({@code stream_jobs/online_table.py}) and passed
 * in; this class only applies protobuf's encoding rules, and writes each key value as
 * Python checked Feast does (a uint32 LE length, then UTF-8 or int64 LE bytes).
 * tests/test_online_sink.py checks the bytes against the Python writer's, and those
 * against Feast's own write.
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

    /** {@code feast.types.Value(bool_val=v)}: field {@code field}, wire type 0 (false is written too: a oneof). */
    static byte[] boolValue(int field, boolean v) {
        ByteArrayOutputStream out = new ByteArrayOutputStream(3);
        varint(out, (long) field << 3);
        out.write(v ? 1 : 0);
        return out.toByteArray();
    }

    /** {@code feast.types.Value(string_val=v)}: field {@code field}, wire type 2, length, UTF-8 bytes. */
    static byte[] stringValue(int field, byte[] utf8) {
        ByteArrayOutputStream out = new ByteArrayOutputStream(utf8.length + 7);
        varint(out, ((long) field << 3) | 2);
        varint(out, utf8.length);
        out.write(utf8, 0, utf8.length);
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

    /** An entity key value as Feast's key holds it after its length: a string's UTF-8 bytes are given; an int64 LE. */
    static byte[] int64Bytes(long v) {
        byte[] out = new byte[8];
        for (int i = 0; i < 8; i++) {
            out[i] = (byte) (v >>> (8 * i));
        }
        return out;
    }

    /** Feast's Redis hash key: per key value (in Feast's order) its head, uint32 LE length and bytes, then the tail. */
    static byte[] hashKey(byte[][] heads, byte[][] values, byte[] tail) {
        ByteArrayOutputStream out = new ByteArrayOutputStream(64);
        for (int i = 0; i < values.length; i++) {
            out.write(heads[i], 0, heads[i].length);
            int n = values[i].length;
            for (int b = 0; b < 4; b++) {
                out.write(n >>> (8 * b));
            }
            out.write(values[i], 0, n);
        }
        out.write(tail, 0, tail.length);
        return out.toByteArray();
    }

    static byte[] hex(String s) {
        byte[] out = new byte[s.length() / 2];
        for (int i = 0; i < out.length; i++) {
            out[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        }
        return out;
    }
}
