package dev.tandem.udf;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.Serializable;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocketFactory;
import javax.net.ssl.TrustManagerFactory;

import org.apache.flink.api.common.operators.ProcessingTimeService;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.metrics.Counter;
import org.apache.flink.metrics.MetricGroup;
import org.apache.flink.table.data.RowData;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import redis.clients.jedis.DefaultJedisClientConfig;
import redis.clients.jedis.HostAndPort;
import redis.clients.jedis.Jedis;
import redis.clients.jedis.Pipeline;
import redis.clients.jedis.exceptions.JedisConnectionException;
import redis.clients.jedis.exceptions.JedisDataException;
import redis.clients.jedis.exceptions.JedisNoScriptException;

/**
 * Writes the latest feature row per (view, entity) into Redis with the guarded-HSET script, acknowledged.
 *
 * <p>The JVM twin of {@code stream_jobs/online_sink.py}'s {@code OnlineWriter} (the semantics and the Lua
 * script are defined there; this class receives the script text): rows are buffered per view, a newer or
 * equal event time replacing an entity's buffered row; the buffer is sent as pipelined {@code EVALSHA}s when
 * it holds {@code batch-size} entities, {@code flush-interval-ms} after its first row (freshness), and on
 * every {@link #flush} -- which Flink calls before each checkpoint barrier and at the end of input, so no
 * checkpoint covers a row Redis has not acknowledged. Connection errors: the unacknowledged rows are re-sent
 * (the script is idempotent) after an exponential backoff, {@code max-tries} sends in all, then the job fails.
 * {@code NOSCRIPT} (a restarted Redis) loads the script again and re-sends those rows.
 */
final class OnlineWriter implements SinkWriter<RowData> {
    private static final Logger LOG = LoggerFactory.getLogger(OnlineWriter.class);

    /** A Feast value type the sink writes: a key part is STRING or INT64, a feature any of them. */
    enum Kind { STRING, INT64, DOUBLE, BOOL }

    static final class View implements Serializable {
        private static final long serialVersionUID = 2L;
        String name;
        String[] keyColumn; // the key columns, in Feast's order (it sorts a composite key's join keys)
        int[] keyIndex;
        Kind[] keyKind;
        byte[][] keyHead; // Feast's bytes before each key value's length
        byte[] keyTail; // and after the last value (the project)
        byte[] tsField;
        int[] featureIndex;
        byte[][] fieldName;
        Kind[] kind;
    }

    static final class Settings implements Serializable {
        private static final long serialVersionUID = 3L;
        String host;
        int port;
        int db;
        String user;
        String password;
        boolean ssl;
        String sslCaPem; // null: the JVM's trusted CAs
        boolean sslCheckHostname; // as redis-py's ssl_check_hostname (default false)
        String script;
        String scriptSha;
        long ttlSeconds;
        int eventTimeIndex;
        int[] valueField; // feast.types.Value's field number of each Kind, by ordinal
        View[] views;
        int batchSize;
        long flushIntervalMs;
        int maxTries;
        long backoffMs;
        long maxBackoffMs;
        int socketTimeoutMs;
        int connectTimeoutMs;
    }

    /** One buffered write: the entity's hash key, its event time and the script's arguments. */
    private record Command(int view, long eventMs, byte[] key, byte[][] args) {}

    private static final byte[] EMPTY = new byte[0];

    private final Settings s;
    private final ProcessingTimeService time;
    private final List<LinkedHashMap<ByteBuffer, Command>> buffer = new ArrayList<>();
    private final byte[] sha;
    private final byte[] ttl;
    private final Counter written;
    private final Counter stale;
    private final Counter superseded;
    private final Counter retries;
    private final Counter errors;
    private final Counter batches;
    private final Counter micros;
    private final String where;
    private Jedis jedis;
    private int buffered;
    private boolean timerSet;

    OnlineWriter(Settings settings, ProcessingTimeService time, MetricGroup metrics) {
        this.s = settings;
        this.time = time;
        this.sha = settings.scriptSha.getBytes(StandardCharsets.US_ASCII);
        this.ttl = Long.toString(settings.ttlSeconds).getBytes(StandardCharsets.US_ASCII);
        this.where = settings.host + ":" + settings.port + "/" + settings.db;
        for (int i = 0; i < settings.views.length; i++) {
            buffer.add(new LinkedHashMap<>());
        }
        MetricGroup g = metrics.addGroup("tandem");
        written = g.counter("online_rows_written");
        stale = g.counter("online_rows_stale");
        superseded = g.counter("online_rows_superseded");
        retries = g.counter("online_write_retries");
        errors = g.counter("online_write_errors"); // failed round trips: each retried, the last one fails the job
        batches = g.counter("online_write_batches"); // batches acknowledged, and the time they took in all
        micros = g.counter("online_write_micros"); // (retries and backoff included): a Prometheus summary
    }

    @Override
    public void write(RowData row, Context context) throws IOException, InterruptedException {
        if (row.isNullAt(s.eventTimeIndex)) {
            throw new IOException("feature row has no event time: the online sink cannot guard it");
        }
        long t = row.getLong(s.eventTimeIndex);
        for (int v = 0; v < s.views.length; v++) {
            View view = s.views[v];
            byte[] key = hashKey(view, row);
            ByteBuffer entity = ByteBuffer.wrap(key);
            Map<ByteBuffer, Command> latest = buffer.get(v);
            Command seen = latest.get(entity);
            if (seen != null && t < seen.eventMs) {
                superseded.inc();
                continue;
            }
            if (seen != null) {
                superseded.inc(); // the buffered row is older, or a peer (same time, same features)
            } else {
                buffered++;
            }
            latest.put(entity, encode(v, view, row, t, key));
        }
        if (buffered >= s.batchSize) {
            send();
        } else if (buffered > 0 && !timerSet) {
            timerSet = true;
            time.registerTimer(time.getCurrentProcessingTime() + s.flushIntervalMs, now -> {
                timerSet = false;
                send();
            });
        }
    }

    /** Feast's hash key of the row's entity in {@code view}; a null key, or an empty string key, fails the job. */
    private static byte[] hashKey(View view, RowData row) throws IOException {
        byte[][] values = new byte[view.keyIndex.length][];
        for (int i = 0; i < values.length; i++) {
            int col = view.keyIndex[i];
            if (row.isNullAt(col)) {
                throw new IOException("feature row has a null " + view.keyColumn[i] + " (view '" + view.name
                        + "'): entity keys are never null");
            }
            if (view.keyKind[i] == Kind.INT64) {
                values[i] = FeastBytes.int64Bytes(row.getLong(col));
            } else {
                values[i] = row.getString(col).toBytes();
                if (values[i].length == 0) {
                    throw new IOException("feature row has an empty " + view.keyColumn[i] + " (view '" + view.name
                            + "'): string entity keys are non-empty");
                }
            }
        }
        return FeastBytes.hashKey(view.keyHead, values, view.keyTail);
    }

    private Command encode(int v, View view, RowData row, long t, byte[] key) {
        int n = view.featureIndex.length;
        byte[][] args = new byte[3 + 2 * n][];
        args[0] = ttl;
        args[1] = view.tsField;
        args[2] = FeastBytes.timestamp(t);
        for (int i = 0; i < n; i++) {
            int col = view.featureIndex[i];
            args[3 + 2 * i] = view.fieldName[i];
            args[4 + 2 * i] = row.isNullAt(col) ? EMPTY : value(view.kind[i], row, col);
        }
        return new Command(v, t, key, args);
    }

    /** A non-null feature as a serialized {@code feast.types.Value}; NaN is null, as Feast's conversion has it. */
    private byte[] value(Kind kind, RowData row, int col) {
        int field = s.valueField[kind.ordinal()];
        return switch (kind) {
            case INT64 -> FeastBytes.int64Value(field, row.getLong(col));
            case DOUBLE -> {
                double d = row.getDouble(col);
                yield Double.isNaN(d) ? EMPTY : FeastBytes.doubleValue(field, d);
            }
            case STRING -> FeastBytes.stringValue(field, row.getString(col).toBytes());
            case BOOL -> FeastBytes.boolValue(field, row.getBoolean(col));
        };
    }

    @Override
    public void flush(boolean endOfInput) throws IOException, InterruptedException {
        send();
    }

    /** Send every buffered row and return once Redis acknowledged each. */
    private void send() throws IOException, InterruptedException {
        if (buffered == 0) {
            return;
        }
        List<Command> pending = new ArrayList<>(buffered);
        for (LinkedHashMap<ByteBuffer, Command> latest : buffer) {
            pending.addAll(latest.values());
            latest.clear();
        }
        buffered = 0;
        for (int start = 0; start < pending.size(); start += s.batchSize) {
            sendWithRetries(pending.subList(start, Math.min(pending.size(), start + s.batchSize)));
        }
    }

    private void sendWithRetries(List<Command> batch) throws IOException, InterruptedException {
        long delay = s.backoffMs;
        long began = System.nanoTime();
        int reloads = 0;
        List<Command> pending = batch;
        for (int attempt = 1; ; attempt++) {
            try {
                while (!pending.isEmpty()) {
                    List<Command> again = sendOnce(pending);
                    if (!again.isEmpty()) { // Redis restarted (or SCRIPT FLUSH): load again, re-send those rows
                        if (++reloads > s.maxTries) {
                            throw new IOException("Redis at " + where + " keeps answering NOSCRIPT after SCRIPT LOAD");
                        }
                        LOG.info("Redis at {} lost the sink's script (restarted?): loading it again", where);
                        loadScript();
                    }
                    pending = again;
                }
                batches.inc();
                micros.inc((System.nanoTime() - began) / 1_000);
                return;
            } catch (JedisConnectionException | Retryable e) {
                errors.inc();
                disconnect(); // the pipeline's replies are lost: its rows count as not written
                if (attempt >= s.maxTries) {
                    throw new IOException(String.format(
                            "Redis at %s unreachable: %d rows not acknowledged after %d tries over %.1fs: %s",
                            where, pending.size(), s.maxTries, (System.nanoTime() - began) / 1e9, oneLine(e)));
                }
                LOG.warn("Redis at {}: {}; retry {}/{} in {} ms", where, oneLine(e), attempt, s.maxTries - 1, delay);
                retries.inc();
                Thread.sleep(delay);
                delay = Math.min(delay * 2, s.maxBackoffMs);
            }
        }
    }

    /** One pipelined round trip; returns the rows that met an empty script cache. */
    private List<Command> sendOnce(List<Command> batch) throws IOException, Retryable {
        Jedis client = connection();
        Pipeline pipe = client.pipelined();
        for (Command c : batch) {
            byte[][] params = new byte[c.args.length + 1][];
            params[0] = c.key;
            System.arraycopy(c.args, 0, params, 1, c.args.length);
            pipe.evalsha(sha, 1, params);
        }
        List<Object> replies = pipe.syncAndReturnAll();
        List<Command> again = new ArrayList<>();
        for (int i = 0; i < batch.size(); i++) {
            Object reply = replies.get(i);
            Command c = batch.get(i);
            if (reply instanceof JedisNoScriptException) {
                again.add(c);
            } else if (reply instanceof JedisDataException e) {
                if (String.valueOf(e.getMessage()).startsWith("LOADING")) { // a restarted Redis reading its data
                    throw new Retryable(e.getMessage());
                }
                throw new IOException("Redis at " + where + " refused a write to view '" + s.views[c.view].name
                        + "': " + oneLine(e));
            } else if (Long.valueOf(1L).equals(reply)) {
                written.inc();
            } else {
                stale.inc();
            }
        }
        return again;
    }

    private Jedis connection() {
        if (jedis == null) {
            DefaultJedisClientConfig.Builder config = DefaultJedisClientConfig.builder()
                    .database(s.db).ssl(s.ssl)
                    .socketTimeoutMillis(s.socketTimeoutMs).connectionTimeoutMillis(s.connectTimeoutMs);
            if (s.user != null) {
                config.user(s.user);
            }
            if (s.password != null) {
                config.password(s.password);
            }
            if (s.ssl && s.sslCaPem != null) {
                config.sslSocketFactory(trusting(s.sslCaPem));
            }
            if (s.ssl && s.sslCheckHostname) {
                SSLParameters parameters = new SSLParameters();
                parameters.setEndpointIdentificationAlgorithm("HTTPS");
                config.sslParameters(parameters);
            }
            Jedis client = new Jedis(new HostAndPort(s.host, s.port), config.build());
            jedis = client;
            loadScript(); // a new connection may be to a restarted server
        }
        return jedis;
    }

    /** A socket factory trusting exactly the CA certificates in {@code pem} (redis-py's ssl_ca_certs). */
    static SSLSocketFactory trusting(String pem) {
        try {
            KeyStore store = KeyStore.getInstance(KeyStore.getDefaultType());
            store.load(null, null);
            int n = 0;
            for (Certificate c : CertificateFactory.getInstance("X.509")
                    .generateCertificates(new ByteArrayInputStream(pem.getBytes(StandardCharsets.US_ASCII)))) {
                store.setCertificateEntry("ca-" + n++, c);
            }
            if (n == 0) {
                throw new IllegalArgumentException("tandem-online: ssl-ca-pem holds no certificate");
            }
            TrustManagerFactory trust = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
            trust.init(store);
            SSLContext context = SSLContext.getInstance("TLS");
            context.init(null, trust.getTrustManagers(), null);
            return context.getSocketFactory();
        } catch (GeneralSecurityException | IOException e) {
            throw new IllegalArgumentException("tandem-online: ssl-ca-pem: " + e.getMessage(), e);
        }
    }

    private void loadScript() {
        byte[] got = connection().scriptLoad(s.script.getBytes(StandardCharsets.UTF_8));
        String hex = new String(got, StandardCharsets.US_ASCII);
        if (!hex.equals(s.scriptSha)) {
            throw new IllegalStateException("Redis at " + where + " returned script SHA " + hex + ", expected "
                    + s.scriptSha);
        }
    }

    private void disconnect() {
        if (jedis != null) {
            try {
                jedis.close();
            } catch (RuntimeException ignored) {
                // the connection is already broken
            }
            jedis = null;
        }
    }

    @Override
    public void close() {
        disconnect();
    }

    private static String oneLine(Throwable e) {
        String text = String.join(" ", String.valueOf(e.getMessage()).trim().split("\\s+"));
        return text.length() <= 300 ? text : text.substring(0, 297) + "...";
    }

    /** A reply that means "try again later" (Redis still loading its data after a restart). */
    private static final class Retryable extends Exception {
        Retryable(String message) {
            super(message);
        }
    }
}
