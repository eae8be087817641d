// Runs a single-node HDFS (NameNode + DataNode, four storage tiers) in one JVM.
//
// Usage: P2pdataHdfs BASE_DIR NN_RPC NN_HTTP DN_XFER DN_IPC DN_HTTP [NN_HTTPS DN_HTTPS]
// Ports may be 0 (the first start); a restart passes the ports it printed so
// clients keep their addresses. BASE_DIR is formatted only if it is empty.
// With -Dp2pdata.https=true both HTTP and HTTPS are served (ssl-server.xml must be on
// the classpath). Prints one line "P2PDATA_HDFS_READY nn_rpc=.. nn_http=.. ..."
// and then runs until stdin closes, so it dies with the Python process that owns it.
//
// "P2pdataHdfs mover ARGS..." runs the HDFS Mover with a 1 s instead of a 30 s wait
// between checks for finished block moves (Hadoop 2.7.3 hard-codes 30 s).

import java.io.File;
import java.util.Arrays;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.hdfs.HdfsConfiguration;
import org.apache.hadoop.hdfs.server.balancer.Dispatcher;
import org.apache.hadoop.hdfs.server.datanode.DataNode;
import org.apache.hadoop.hdfs.server.mover.Mover;
import org.apache.hadoop.hdfs.server.namenode.NameNode;
import org.apache.hadoop.metrics2.lib.DefaultMetricsSystem;

public class P2pdataHdfs {
    public static void main(String[] args) throws Exception {
        if (args.length > 0 && args[0].equals("mover")) {
            Dispatcher.setBlockMoveWaitTime(1000);
            Mover.main(Arrays.copyOfRange(args, 1, args.length));
            return;
        }
        File base = new File(args[0]).getAbsoluteFile();
        String host = "127.0.0.1";
        // Without this the DataNode's metrics clash with the NameNode's in one JVM.
        DefaultMetricsSystem.setMiniClusterMode(true);

        Configuration conf = new HdfsConfiguration();
        File name = new File(base, "name");
        conf.set("dfs.namenode.name.dir", name.toURI().toString());
        conf.set("dfs.namenode.edits.dir", name.toURI().toString());
        conf.set("dfs.datanode.data.dir",
            "[DISK]" + new File(base, "data/disk").toURI()
            + ",[SSD]" + new File(base, "data/ssd").toURI()
            + ",[ARCHIVE]" + new File(base, "data/archive").toURI()
            + ",[RAM_DISK]" + new File(base, "data/ram_disk").toURI());
        conf.set("fs.defaultFS", "hdfs://" + host + ":" + args[1]);
        conf.set("dfs.namenode.rpc-address", host + ":" + args[1]);
        conf.set("dfs.namenode.http-address", host + ":" + args[2]);
        conf.set("dfs.namenode.secondary.http-address", host + ":0");
        conf.set("dfs.datanode.address", host + ":" + args[3]);
        conf.set("dfs.datanode.ipc.address", host + ":" + args[4]);
        conf.set("dfs.datanode.http.address", host + ":" + args[5]);
        // Keeps WebHDFS redirects on loopback.
        conf.set("dfs.datanode.hostname", host);
        conf.set("dfs.namenode.datanode.registration.ip-hostname-check", "false");
        conf.set("dfs.replication", "1");
        conf.set("dfs.webhdfs.enabled", "true");
        conf.set("dfs.storage.policy.enabled", "true");
        conf.set("dfs.permissions.enabled", System.getProperty("p2pdata.permissions", "false"));
        conf.set("dfs.namenode.fs-limits.min-block-size", "0");
        conf.set("dfs.heartbeat.interval", "1");
        conf.set("dfs.namenode.replication.interval", "1");
        conf.set("dfs.namenode.safemode.extension", "0");
        conf.set("dfs.datanode.lazywriter.interval.sec", "1");
        conf.set("dfs.datanode.balance.max.concurrent.moves", "50");
        conf.set("dfs.client.block.write.replace-datanode-on-failure.enable", "false");
        // Issue delegation tokens (GETDELEGATIONTOKEN) although security is off, as a
        // secure cluster would; without Kerberos the NameNode still ignores them.
        conf.set("dfs.namenode.delegation.token.always-use", "true");
        boolean https = Boolean.getBoolean("p2pdata.https");
        if (https) {
            conf.set("dfs.http.policy", "HTTP_AND_HTTPS");
            conf.set("dfs.namenode.https-address", host + ":" + args[6]);
            conf.set("dfs.datanode.https.address", host + ":" + args[7]);
            // 2.7.3 defaults to TLSv1 only, which Java 17 and Python refuse.
            conf.set("hadoop.ssl.enabled.protocols", "TLSv1.2");
        }

        if (!new File(name, "current/VERSION").exists()) {
            NameNode.format(conf);
        }
        NameNode nn = NameNode.createNameNode(new String[0], conf);
        int rpc = nn.getNameNodeAddress().getPort();
        int http = nn.getHttpAddress().getPort();
        conf.set("fs.defaultFS", "hdfs://" + host + ":" + rpc);
        conf.set("dfs.namenode.rpc-address", host + ":" + rpc);

        DataNode dn = DataNode.createDataNode(new String[0], conf);
        long deadline = System.currentTimeMillis() + 60_000;
        // A restarted NameNode stays in safe mode until the DataNode reports its blocks.
        while (!dn.isDatanodeFullyStarted() || nn.getNamesystem().isInSafeMode()) {
            if (System.currentTimeMillis() > deadline) {
                throw new IllegalStateException("DataNode did not start within 60 s");
            }
            Thread.sleep(50);
        }
        String ready = "P2PDATA_HDFS_READY nn_rpc=" + rpc + " nn_http=" + http
            + " dn_xfer=" + dn.getXferPort() + " dn_ipc=" + dn.getIpcPort()
            + " dn_http=" + dn.getInfoPort();
        if (https) {
            ready += " nn_https=" + nn.getHttpsAddress().getPort()
                + " dn_https=" + dn.getInfoSecurePort();
        }
        System.out.println(ready);
        System.out.flush();
        while (System.in.read() != -1) {
            // Ignore input; EOF means the owner is gone.
        }
        Runtime.getRuntime().halt(0);
    }
}
