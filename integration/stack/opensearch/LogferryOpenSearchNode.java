// Starts one real OpenSearch 2 node in this JVM, without the distribution's CLI/bootstrap.
//
// Why: as for Elasticsearch (es/LogferryEsNode.java), the distribution is not on Maven Central
// but the server jar (org.opensearch:opensearch) and the transport-netty4 module
// (org.opensearch.plugin:transport-netty4-client) are. opensearch.py lays them out like a
// distribution (lib/ on the class path, modules/transport-netty4/ with a plugin descriptor)
// and runs this class. OpenSearch keeps `GET /` in the server (no rest-root module needed).
//
// Usage: java -cp LIB/*:LAUNCHER LogferryOpenSearchNode logferry.config_dir=DIR path.home=... key=value ...
// Blocks until SIGTERM/SIGINT, then closes the node and exits.

import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;

public final class LogferryOpenSearchNode {
    public static void main(String[] args) throws Exception {
        Settings.Builder builder = Settings.builder();
        Path configDir = null;
        for (String arg : args) {
            int eq = arg.indexOf('=');
            if (eq <= 0) {
                throw new IllegalArgumentException("expected key=value, got: " + arg);
            }
            String key = arg.substring(0, eq);
            if (key.equals("logferry.config_dir")) {
                configDir = Path.of(arg.substring(eq + 1)).toAbsolutePath();
            } else {
                builder.put(key, arg.substring(eq + 1));
            }
        }
        if (configDir == null) {
            throw new IllegalArgumentException("logferry.config_dir=DIR is required");
        }
        Settings settings = builder.build();
        String nodeName = settings.get("node.name", "node");
        LogConfigurator.registerErrorListener();
        Environment env = InternalSettingsPreparer.prepareEnvironment(settings, Map.of(), configDir, () -> nodeName);
        LogConfigurator.setNodeName(nodeName);
        LogConfigurator.configure(env);

        Node node = new Node(env);
        CountDownLatch closed = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
                node.awaitClose(20, TimeUnit.SECONDS);
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                closed.countDown();
            }
        }, "logferry-opensearch-shutdown"));
        node.start();
        System.out.println("LOGFERRY-OPENSEARCH-STARTED " + nodeName);
        closed.await();
    }
}
