// jsforce (record DML and Bulk API 2.0 ingest) against the emulator. Prints one JSON line.
// env: JSFORCE_DIR (where node_modules/jsforce is), SF_INSTANCE_URL, SF_ACCESS_TOKEN
const path = require('path');
const jsforce = require(path.join(process.env.JSFORCE_DIR, 'node_modules', 'jsforce'));

async function main() {
  const conn = new jsforce.Connection({
    instanceUrl: process.env.SF_INSTANCE_URL,
    accessToken: process.env.SF_ACCESS_TOKEN,
    version: '62.0',
  });
  const created = await conn.sobject('Account').create({ Name: 'Jsforce Co', Industry: 'JS' });
  const upserted = await conn.sobject('Account').upsert({ Name: 'Jsforce Upsert', External_Id__c: 'JS-1' }, 'External_Id__c');
  let refused;
  try {
    await conn.sobject('Opportunity').create({ Name: 'No stage' });
  } catch (err) {
    refused = { name: err.name, errorCode: err.errorCode, message: err.message };
  }
  const bulk = await conn.bulk2.loadAndWaitForResults({
    object: 'Account',
    operation: 'insert',
    input: [{ Name: 'JS Bulk 1', Industry: 'JS' }, { Name: 'JS Bulk 2', Industry: 'JS' }, { Name: '', Industry: 'JS' }],
    pollInterval: 50,
    pollTimeout: 20000,
  });
  const queried = await conn.query("SELECT Id, Name FROM Account WHERE Industry = 'JS' ORDER BY Name");
  console.log(JSON.stringify({ created, upserted, refused, bulk, queried: queried.records }));
}

main().catch((err) => {
  console.error(`jsforce failed: ${err.name}: ${err.message}`);
  process.exit(1);
});
