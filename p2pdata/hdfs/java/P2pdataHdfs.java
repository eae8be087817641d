// Runs a single-node HDFS (NameNode + DataNode, four storage tiers) in one JVM.
//
// Usage: P2pdataHdfs BASE_DIR NN_RPC NN_HTTP DN_XFER DN_IPC DN_HTTP
// Ports may be 0 (the first start); a restart passes the ports it printed so
// clients keep their addresses. BASE_DIR is formatted only if it is empty.
// Prints one line "P2PDATA_HDFS_READY nn_rpc=.. nn_http=.. dn_xfer=.. dn_ipc=.. dn_http=.."
// and then runs until stdin closes, so it dies with the Python process that owns it.

import java.io.File;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.hdfs.HdfsConfiguration;
import org.apache.hadoop.hdfs.server.datanode.DataNode;
import org.apache.hadoop.hdfs.server.namenode.NameNode;
import org.apache.hadoop.metrics2.lib.DefaultMetricsSystem;

public class P2pdataHdfs {
    public static void main(String[] args) throws Exception {
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
        System.out.println("P2PDATA_HDFS_READY nn_rpc=" + rpc + " nn_http=" + http
            + " dn_xfer=" + dn.getXferPort() + " dn_ipc=" + dn.getIpcPort()
            + " dn_http=" + dn.getInfoPort());
        System.out.flush();
        while (System.in.read() != -1) {
            // Ignore input; EOF means the owner is gone.
        }
        Runtime.getRuntime().halt(0);
    }
}
