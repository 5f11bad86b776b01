package dev.tandem.udf;

import java.io.IOException;
import org.apache.flink.api.common.typeutils.SimpleTypeSerializerSnapshot;
import org.apache.flink.api.common.typeutils.TypeSerializerSnapshot;
import org.apache.flink.api.common.typeutils.base.TypeSerializerSingleton;
import org.apache.flink.core.memory.DataInputView;
import org.apache.flink.core.memory.DataOutputView;

/**
 * Flink's serializer for {@link KeyWindows} state, so checkpoints hold Tandem's compact format
 * rather than Kryo's. {@link #copy} is a deep copy: the heap state backend copies an entry that a
 * running snapshot still references before the function may change it.
 */
public final class KeyWindowsSerializer extends TypeSerializerSingleton<KeyWindows> {
    private static final long serialVersionUID = 1L;

    @Override
    public boolean isImmutableType() {
        return false;
    }

    @Override
    public KeyWindows createInstance() {
        return null;  // there is no empty KeyWindows without a spec; Flink does not need one here
    }

    @Override
    public KeyWindows copy(KeyWindows from) {
        return from == null ? null : from.copy();
    }

    @Override
    public KeyWindows copy(KeyWindows from, KeyWindows reuse) {
        return copy(from);
    }

    @Override
    public int getLength() {
        return -1;
    }

    @Override
    public void serialize(KeyWindows record, DataOutputView target) throws IOException {
        record.write(target);
    }

    @Override
    public KeyWindows deserialize(DataInputView source) throws IOException {
        return KeyWindows.read(source);
    }

    @Override
    public KeyWindows deserialize(KeyWindows reuse, DataInputView source) throws IOException {
        return deserialize(source);
    }

    @Override
    public void copy(DataInputView source, DataOutputView target) throws IOException {
        serialize(deserialize(source), target);
    }

    @Override
    public TypeSerializerSnapshot<KeyWindows> snapshotConfiguration() {
        return new Snapshot();
    }

    /** Restores the serializer from a checkpoint (it has no configuration). */
    public static final class Snapshot extends SimpleTypeSerializerSnapshot<KeyWindows> {
        public Snapshot() {
            super(KeyWindowsSerializer::new);
        }
    }
}
